//! DRA selectors against devices as NVIDIA's driver publishes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use railyard_dra::cel::{CelDevice, CelError, MAX_EXPRESSION_LEN, Selector, SelectorCache};
use railyard_dra::device::{AttrValue, Capacity, Device};
use railyard_dra::quantity::Quantity;

const DRIVER: &str = "gpu.nvidia.com";

fn s(v: &str) -> AttrValue {
    AttrValue::String(v.to_owned())
}

/// A whole H100 as `gpu-kubelet-plugin` publishes it: unqualified names in
/// the driver's domain, the PCI and NUMA attributes in
/// `resource.kubernetes.io`.
fn h100(minor: u32) -> Device {
    let mut attributes = BTreeMap::new();
    attributes.insert("type".to_owned(), s("gpu"));
    attributes.insert(
        "uuid".to_owned(),
        s(&format!("GPU-4b0c2f6e-0000-0000-0000-00000000000{minor}")),
    );
    attributes.insert("productName".to_owned(), s("NVIDIA H100 80GB HBM3"));
    attributes.insert("brand".to_owned(), s("Nvidia"));
    attributes.insert("architecture".to_owned(), s("Hopper"));
    attributes.insert(
        "cudaComputeCapability".to_owned(),
        AttrValue::Version("9.0.0".to_owned()),
    );
    attributes.insert("driverVersion".to_owned(), AttrValue::Version("550.54.15".to_owned()));
    attributes.insert("cudaDriverVersion".to_owned(), AttrValue::Version("12.4.0".to_owned()));
    attributes.insert(
        "resource.kubernetes.io/pciBusID".to_owned(),
        s(&format!("0000:{:02x}:00.0", 0x18 + minor)),
    );
    attributes.insert("resource.kubernetes.io/pcieRoot".to_owned(), s("pci0000:00"));
    attributes.insert(
        "resource.kubernetes.io/numaNode".to_owned(),
        AttrValue::Int(i64::from(minor / 4)),
    );
    let mut capacity = BTreeMap::new();
    capacity.insert(
        "memory".to_owned(),
        Capacity::fixed(Quantity::from_bytes(85_899_345_920)),
    );
    Device {
        name: format!("gpu-{minor}"),
        attributes,
        capacity,
        ..Device::default()
    }
}

fn mig() -> Device {
    let mut d = h100(1);
    d.name = "gpu-1-mig-1g10gb-19-0".to_owned();
    d.attributes.insert("type".to_owned(), s("mig"));
    d.attributes.insert("profile".to_owned(), s("1g.10gb"));
    d.capacity.insert(
        "memory".to_owned(),
        Capacity::fixed(Quantity::from_bytes(10_737_418_240)),
    );
    d
}

fn eval(expr: &str, device: &Device) -> Result<bool, CelError> {
    Selector::compile(expr)?.matches(DRIVER, device)
}

fn check(expr: &str, device: &Device, want: bool) {
    match eval(expr, device) {
        Ok(got) => assert_eq!(got, want, "{expr}"),
        Err(e) => panic!("{expr}: {e}"),
    }
}

#[test]
fn nvidia_device_class_selectors() {
    let gpu = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'";
    let mig_class = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'";
    check(gpu, &h100(0), true);
    check(gpu, &mig(), false);
    check(mig_class, &mig(), true);
    // Another driver's device: the driver check fails first.
    let other = Selector::compile(gpu).and_then(|s| s.matches("dra.example.com", &h100(0)));
    assert_eq!(other, Ok(false));
}

#[test]
fn product_name_selectors() {
    let d = h100(0);
    for (expr, want) in [
        (
            "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA H100 80GB HBM3'",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].productName == 'NVIDIA A100-SXM4-80GB'",
            false,
        ),
        (
            "device.attributes['gpu.nvidia.com'].productName.startsWith('NVIDIA H100')",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].productName.matches('^NVIDIA (H100|H200)')",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].productName.lowerAscii().contains('h100')",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].productName in ['NVIDIA H100 80GB HBM3', 'NVIDIA H200']",
            true,
        ),
        ("device.attributes['gpu.nvidia.com'].architecture == 'Hopper'", true),
    ] {
        check(expr, &d, want);
    }
}

#[test]
fn capacity_is_a_quantity() {
    let d = h100(0);
    for (expr, want) in [
        (
            "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('80Gi')) == 0",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('100Gi')) >= 0",
            false,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.isGreaterThan(quantity('79Gi'))",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.isLessThan(quantity('40Gi'))",
            false,
        ),
        ("device.capacity['gpu.nvidia.com'].memory == quantity('80Gi')", true),
        ("device.capacity['gpu.nvidia.com'].memory != quantity('80Gi')", false),
        (
            "device.capacity['gpu.nvidia.com'].memory.asInteger() == 85899345920",
            true,
        ),
        ("device.capacity['gpu.nvidia.com'].memory.isInteger()", true),
        ("device.capacity['gpu.nvidia.com'].memory.sign() == 1", true),
        ("sign(device.capacity['gpu.nvidia.com'].memory) == 1", true),
        (
            "device.capacity['gpu.nvidia.com'].memory.asApproximateFloat() > 8.5e10",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.sub(quantity('40Gi')) == quantity('40Gi')",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.add(1).asInteger() == 85899345921",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'].memory.sub(85899345920).sign() == 0",
            true,
        ),
        (
            "device.capacity['gpu.nvidia.com'] == {'memory': quantity('80Gi')}",
            true,
        ),
        ("isQuantity('80Gi') && !isQuantity('80GiB')", true),
        ("quantity('1Gi') == quantity('1024Mi')", true),
        ("quantity('200M') == quantity('0.2G')", true),
        ("quantity('50M').compareTo(quantity('50Mi')) == -1", true),
    ] {
        check(expr, &d, want);
    }
    // A malformed quantity is an error, not false.
    let e = eval(
        "device.capacity['gpu.nvidia.com'].memory.isGreaterThan(quantity('40 Gi'))",
        &d,
    );
    assert!(matches!(e, Err(CelError::Eval { .. })), "{e:?}");
    // Quantities do not mix with ints in comparisons, as upstream.
    let e = eval("device.capacity['gpu.nvidia.com'].memory.compareTo(40)", &d);
    assert!(
        matches!(&e, Err(CelError::Eval { message, .. }) if message.contains("compareTo")),
        "{e:?}"
    );
}

#[test]
fn versions_are_semvers() {
    let d = h100(0);
    for (expr, want) in [
        (
            "device.attributes['gpu.nvidia.com'].driverVersion.isGreaterThan(semver('535.0.0'))",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].driverVersion.isLessThan(semver('535.0.0'))",
            false,
        ),
        (
            "device.attributes['gpu.nvidia.com'].driverVersion.compareTo(semver('550.54.15')) == 0",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].driverVersion == semver('550.54.15')",
            true,
        ),
        ("device.attributes['gpu.nvidia.com'].driverVersion.major() == 550", true),
        ("device.attributes['gpu.nvidia.com'].driverVersion.minor() == 54", true),
        ("device.attributes['gpu.nvidia.com'].driverVersion.patch() == 15", true),
        (
            "device.attributes['gpu.nvidia.com'].cudaComputeCapability.major() >= 9",
            true,
        ),
        (
            "device.attributes['gpu.nvidia.com'].cudaDriverVersion.isGreaterThan(semver('12.0.0'))",
            true,
        ),
        ("isSemver('1.2.3') && !isSemver('v1.2') && isSemver('v1.2', true)", true),
    ] {
        check(expr, &d, want);
    }
}

#[test]
fn a_version_that_is_not_semver_fails_every_selector() {
    let mut d = h100(0);
    d.attributes
        .insert("driverVersion".to_owned(), AttrValue::Version("550.54".to_owned()));
    let e = eval("device.driver == 'gpu.nvidia.com'", &d).expect_err("invalid version");
    let text = e.to_string();
    assert!(text.contains("driverVersion") && text.contains("gpu-0"), "{text}");
}

#[test]
fn unqualified_names_belong_to_the_drivers_domain() {
    let mut d = h100(0);
    // Published qualified with the driver's own domain: the same map.
    d.attributes
        .insert("gpu.nvidia.com/addressingMode".to_owned(), s("HMM"));
    for (expr, want) in [
        ("device.attributes['gpu.nvidia.com'].addressingMode == 'HMM'", true),
        ("device.attributes['gpu.nvidia.com'].uuid.startsWith('GPU-')", true),
        (
            "device.attributes['resource.kubernetes.io'].pciBusID == '0000:18:00.0'",
            true,
        ),
        (
            "device.attributes['resource.kubernetes.io'].pcieRoot == 'pci0000:00'",
            true,
        ),
        ("device.attributes['resource.kubernetes.io'].numaNode == 0", true),
        ("device.attributes['resource.kubernetes.io'].numaNode > 0", false),
        ("'pciBusID' in device.attributes['resource.kubernetes.io']", true),
        ("'pciBusID' in device.attributes['gpu.nvidia.com']", false),
        ("size(device.attributes) == 2 && size(device.capacity) == 1", true),
        (
            "device.attributes['gpu.nvidia.com'].exists(k, k == 'productName')",
            true,
        ),
        ("device.attributes.all(d, size(device.attributes[d]) > 0)", true),
        ("device.attributes['gpu.nvidia.com'].map(k, k).size() == 9", true),
        ("!device.allowMultipleAllocations", true),
    ] {
        check(expr, &d, want);
    }
    // The same unqualified names, published by another driver.
    let sel = Selector::compile("device.attributes['dra.example.com'].type == 'gpu'").expect("compiles");
    assert_eq!(sel.matches("dra.example.com", &d), Ok(true));
    let mut shared = h100(0);
    shared.allow_multiple_allocations = true;
    check("device.allowMultipleAllocations", &shared, true);
}

#[test]
fn an_unknown_domain_is_an_empty_map() {
    let d = h100(0);
    for (expr, want) in [
        ("'x' in device.attributes['dranet.example.com']", false),
        ("has(device.attributes['dranet.example.com'].x)", false),
        ("size(device.attributes['dranet.example.com']) == 0", true),
        ("device.attributes['dranet.example.com'] == {}", true),
        ("'dranet.example.com' in device.attributes", false),
        ("'gpu.nvidia.com' in device.attributes", true),
        ("'x' in device.capacity['dranet.example.com']", false),
        // A domain computed at run time reads the same.
        ("'type' in device.attributes['gpu.nvidia' + '.com']", true),
        ("cel.bind(d, 'other.io', size(device.attributes[d]) == 0)", true),
    ] {
        check(expr, &d, want);
    }
}

#[test]
fn an_unknown_id_is_an_error_naming_key_and_expression() {
    let d = h100(0);
    let expr = "device.attributes['gpu.nvidia.com'].index == 0";
    let e = eval(expr, &d).expect_err("no such attribute");
    let text = e.to_string();
    assert!(matches!(e, CelError::Eval { .. }), "{e:?}");
    assert!(
        text.contains("no such key: index") && text.contains(expr) && text.contains("gpu-0"),
        "{text}"
    );
    // Guarded, it is false.
    check(
        "has(device.attributes['gpu.nvidia.com'].index) && device.attributes['gpu.nvidia.com'].index == 0",
        &d,
        false,
    );
    check(
        "'index' in device.attributes['gpu.nvidia.com'] && device.attributes['gpu.nvidia.com'].index == 0",
        &d,
        false,
    );
    // MIG devices have a profile, whole GPUs do not.
    let e = eval("device.attributes['gpu.nvidia.com'].profile == '1g.10gb'", &d).expect_err("no profile");
    assert!(e.to_string().contains("no such key: profile"), "{e}");
    check("device.attributes['gpu.nvidia.com'].profile == '1g.10gb'", &mig(), true);
    let e = eval("device.capacity['gpu.nvidia.com'].multiprocessors.isInteger()", &d).expect_err("no such capacity");
    assert!(e.to_string().contains("no such key: multiprocessors"), "{e}");
    let e = eval("device.name == 'gpu-0'", &d).expect_err("no such field");
    assert!(e.to_string().contains("no such key: name"), "{e}");
}

#[test]
fn malformed_selectors_do_not_compile_and_say_where() {
    for expr in [
        "device.attributes['gpu.nvidia.com'].productName ==",
        "device.attributes['gpu.nvidia.com'.productName",
        "device.driver = 'gpu.nvidia.com'",
        "",
    ] {
        match Selector::compile(expr) {
            Err(CelError::Compile { expression, message }) => {
                assert_eq!(expression, expr);
                assert!(message.contains("<input>:1:"), "{expr}: {message}");
            }
            other => panic!("{expr}: {other:?}"),
        }
    }
    let e = Selector::compile("cel.bind(1, 2, 3)").expect_err("not a name");
    assert!(e.to_string().contains("simple identifiers"), "{e}");
}

#[test]
fn the_result_must_be_a_bool() {
    let d = h100(0);
    for expr in [
        "1 + 1",
        "device.attributes['gpu.nvidia.com'].productName",
        "device.capacity['gpu.nvidia.com'].memory",
        "device.attributes",
    ] {
        let e = eval(expr, &d).expect_err("not a bool");
        assert!(e.to_string().contains("must evaluate to bool"), "{expr}: {e}");
    }
    // A bool attribute is a bool.
    let mut d = h100(0);
    d.attributes.insert("mig".to_owned(), AttrValue::Bool(false));
    check("device.attributes['gpu.nvidia.com'].mig", &d, false);
}

#[test]
fn cel_bind_names_a_value_once() {
    let d = h100(0);
    for (expr, want) in [
        (
            "cel.bind(g, device.attributes['gpu.nvidia.com'], g.type == 'gpu' && g.productName.startsWith('NVIDIA H100'))",
            true,
        ),
        (
            "cel.bind(k, device.attributes['resource.kubernetes.io'], k.numaNode == 0 && k.pcieRoot == 'pci0000:00')",
            true,
        ),
        (
            "cel.bind(m, device.capacity['gpu.nvidia.com'].memory, m.isGreaterThan(quantity('40Gi')) && m.isLessThan(quantity('96Gi')))",
            true,
        ),
        ("cel.bind(a, 1, cel.bind(b, a + 1, b == 2))", true),
        // A binding shadows the device.
        ("cel.bind(device, 'x', device == 'x')", true),
    ] {
        check(expr, &d, want);
    }
    // `bind` on anything but `cel` is not the macro.
    let e = eval("other.bind(a, 1, a == 1)", &d).expect_err("not cel.bind");
    assert!(matches!(e, CelError::Eval { .. }), "{e:?}");
}

fn hundred() -> String {
    format!("[{}]", (1..=100).map(|i| i.to_string()).collect::<Vec<_>>().join(", "))
}

#[test]
fn work_is_bounded_at_compile_time() {
    let l = hundred();
    let four = format!("{l}.all(x, {l}.all(y, {l}.all(z, {l}.all(w, x + y + z + w > 0))))");
    let e = Selector::compile(&four).expect_err("10^8 iterations");
    assert!(matches!(e, CelError::CostLimit { .. }), "{e:?}");
    assert!(
        e.to_string().contains("exceeds the cost limit") && e.to_string().contains("1000000"),
        "{e}"
    );
    let three = format!("{l}.all(x, {l}.all(y, {l}.all(z, x + y + z > 0)))");
    assert!(matches!(Selector::compile(&three), Err(CelError::CostLimit { .. })));
    // Two levels, 10^4 iterations, are fine and run.
    let two = format!("{l}.all(x, {l}.exists(y, x == y))");
    check(&two, &h100(0), true);
    // Doubling a string through nested binds: 2^25 bytes.
    let doubling = (0..24).fold("'ab'".to_owned(), |body, i| {
        format!("cel.bind(v{i}, {body}, v{i} + v{i})")
    });
    let e = Selector::compile(&format!("size({doubling}) > 0")).expect_err("exponential");
    assert!(matches!(e, CelError::CostLimit { .. }), "{e:?}");
    let nested = (0..24).fold("s".to_owned(), |body, _| format!("cel.bind(s, s + s, {body})"));
    let e = Selector::compile(&format!("cel.bind(s, 'ab', size({nested}) > 0)")).expect_err("exponential");
    assert!(matches!(e, CelError::CostLimit { .. }), "{e:?}");
    // A few doublings are ordinary.
    let few = (0..4).fold("'ab'".to_owned(), |body, i| {
        format!("cel.bind(v{i}, {body}, v{i} + v{i})")
    });
    check(&format!("size({few}) == 32"), &h100(0), true);
    // Iterating over the device's maps is bounded by the API's limits.
    check(
        "device.attributes.all(d, device.attributes[d].all(k, device.attributes.exists(e, e == d)))",
        &h100(0),
        true,
    );
    // String functions that multiply sizes.
    let e = Selector::compile(&format!(
        "cel.bind(a, '{}', cel.bind(b, a.replace('', a), cel.bind(c, b.replace('', b), size(c) > 0)))",
        "x".repeat(100)
    ));
    assert!(matches!(e, Err(CelError::CostLimit { .. })), "{e:?}");
}

#[test]
fn length_and_nesting_are_limited() {
    let long = format!("true || {}", "true || ".repeat(MAX_EXPRESSION_LEN / 8));
    assert!(matches!(Selector::compile(&long), Err(CelError::TooLong { .. })));
    let at_limit = format!("{}true", "true || ".repeat((MAX_EXPRESSION_LEN - 4) / 8));
    assert!(at_limit.len() <= MAX_EXPRESSION_LEN);
    check(&at_limit, &h100(0), true);
    // Chains the parser recurses into, as long as the limit allows: refused,
    // without overflowing this thread's stack.
    for hostile in [
        format!("device{}", ".a".repeat(5000)),
        format!("1{} == 1", "+1".repeat(5000)),
        format!("{}1{} == 1", "-(".repeat(3000), ")".repeat(3000)),
        format!("{}true{}", "(".repeat(5000), ")".repeat(5000)),
        format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
    ] {
        let head: String = hostile.chars().take(12).collect();
        match Selector::compile(&hostile) {
            Err(CelError::Compile { .. } | CelError::CostLimit { .. }) => {}
            other => panic!("{head}…: {:?}", other.map(|_| ())),
        }
    }
    // The CEL spec's 32 levels of nesting are fine.
    check(&format!("{}true{}", "(".repeat(32), ")".repeat(32)), &h100(0), true);
    check(&format!("{}true", "!".repeat(32)), &h100(0), true);
    // Pairs of `!` cancel out in the parser: no depth at all.
    check(&format!("{}true", "!".repeat(9_000)), &h100(0), true);
}

#[test]
fn a_prepared_device_serves_many_selectors() {
    let devices = [h100(0), h100(5), mig()];
    let prepared: Vec<CelDevice<'_>> = devices.iter().map(|d| CelDevice::new(DRIVER, d)).collect();
    let numa1 = Selector::compile("device.attributes['resource.kubernetes.io'].numaNode == 1").expect("compiles");
    let whole = Selector::compile("device.attributes['gpu.nvidia.com'].type == 'gpu'").expect("compiles");
    let got: Vec<(bool, bool)> = prepared
        .iter()
        .map(|d| {
            (
                numa1.matches_device(d).expect("numa"),
                whole.matches_device(d).expect("type"),
            )
        })
        .collect();
    assert_eq!(got, [(false, true), (true, true), (false, false)]);
    assert_eq!(prepared[2].name(), "gpu-1-mig-1g10gb-19-0");
}

#[test]
fn the_cache_compiles_once_and_stays_bounded() {
    fn shared<T: Send + Sync>() {}
    shared::<Selector>();
    shared::<SelectorCache>();

    let cache = SelectorCache::with_capacity(2);
    let a = cache.get("device.driver == 'a'").expect("compiles");
    assert!(Arc::ptr_eq(&a, &cache.get("device.driver == 'a'").expect("cached")));
    // Errors are kept too, and say the same.
    let bad = cache.get("device.driver ==").expect_err("malformed");
    assert_eq!(cache.get("device.driver ==").err(), Some(bad));
    assert_eq!(cache.len(), 2);
    // Full: the oldest goes.
    let _b = cache.get("device.driver == 'b'").expect("compiles");
    assert_eq!(cache.len(), 2);
    let again = cache.get("device.driver == 'a'").expect("recompiled");
    assert!(!Arc::ptr_eq(&a, &again));
    // Over-long expressions are refused and not kept.
    let long = "x".repeat(MAX_EXPRESSION_LEN + 1);
    assert!(matches!(cache.get(&long), Err(CelError::TooLong { .. })));
    assert_eq!(cache.len(), 2);

    // Shared by threads.
    let cache = Arc::new(SelectorCache::default());
    let d = h100(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let cache = cache.clone();
            let d = &d;
            s.spawn(move || {
                let sel = cache
                    .get("device.attributes['gpu.nvidia.com'].type == 'gpu'")
                    .expect("compiles");
                assert_eq!(sel.matches(DRIVER, d), Ok(true));
            });
        }
    });
    assert_eq!(cache.len(), 1);
}

#[test]
fn the_deepest_accepted_selectors_evaluate_on_a_small_stack() {
    use railyard_dra::cel::MAX_AST_DEPTH;
    // An addition chain and nested comprehensions as deep as accepted,
    // evaluated on a 2 MiB thread (the default for spawned threads).
    let chain = format!("1{} > 0", " + 1".repeat(MAX_AST_DEPTH - 3));
    let nested = (0..MAX_AST_DEPTH / 2 - 2).fold("true".to_owned(), |body, i| format!("[{i}].all(x{i}, {body})"));
    let conditional = format!("{}true", "false ? false : ".repeat(30));
    let selectors: Vec<Selector> = [chain, nested, conditional]
        .iter()
        .map(|e| Selector::compile(e).unwrap_or_else(|err| panic!("{err}")))
        .collect();
    let d = h100(0);
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for s in &selectors {
                assert_eq!(s.matches(DRIVER, &d), Ok(true), "{}", s.expression());
            }
        })
        .expect("thread")
        .join()
        .expect("no overflow");
    // One level deeper is refused.
    let too_deep = format!("1{} > 0", " + 1".repeat(MAX_AST_DEPTH));
    assert!(
        matches!(Selector::compile(&too_deep), Err(CelError::Compile { message, .. }) if message.contains("nested deeper"))
    );
}
