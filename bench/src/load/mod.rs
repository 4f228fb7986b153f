//! `railyard-bench load`: drives the scheduler extender over HTTP with
//! realistic `filter` + `prioritize` pairs and reports latency and
//! throughput.
//!
//! By default the extender runs in-process on 127.0.0.1 (its own tokio
//! runtime with `--server-threads` workers) over a synthetic cluster: 60%
//! 8-GPU whole-GPU nodes, 25% 8-GPU nodes shared 4 ways
//! (`nvidia.com/gpu.shared`), 15% MIG nodes, about half of the GPUs in use.
//! `--target` drives an extender already running on a loopback address
//! instead (it must know nodes `node-0` … `node-<N-1>`). Requests carry
//! `NodeNames` (nodeCacheCapable) for every node, or `--nodes-per-request`.
//! Each pair is filter, then prioritize over the nodes that passed, as
//! kube-scheduler sends them; no bind, so the cluster state is the same for
//! every request.

mod client;
pub mod fixture;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use fixture::{build_state, pod_mix};

#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Cluster sizes to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000, 10000])]
    pub nodes: Vec<usize>,
    /// filter+prioritize pairs per size (after `--warmup`).
    #[arg(long, default_value_t = 3000)]
    pub requests: usize,
    /// Pairs sent first and not measured.
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Concurrent client connections. kube-scheduler's scheduling cycle is
    /// serial (one pod's filter and prioritize at a time), so 1 is what a
    /// scheduler sends; more measures headroom.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Worker threads of the in-process extender's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Node names per request (kube-scheduler's percentageOfNodesToScore
    /// sends fewer than all); default all.
    #[arg(long)]
    pub nodes_per_request: Option<usize>,
    /// Drive a running extender (`http://127.0.0.1:8888/railyard`); loopback only.
    #[arg(long)]
    pub target: Option<String>,
    /// Seed of the synthetic cluster and pod mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Results of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub nodes: usize,
    pub names_per_request: usize,
    pub pairs: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub pods_per_s: f64,
    pub passed_mean: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Parses `http://host:port/prefix`; only loopback hosts.
fn parse_target(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://").context("--target must be an http:// URL")?;
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    let host = host.replace("localhost", "127.0.0.1");
    let addr: SocketAddr = host
        .parse()
        .with_context(|| format!("--target host {host:?} must be ip:port"))?;
    if !addr.ip().is_loopback() {
        bail!("--target must be a loopback address, got {addr}");
    }
    Ok((addr, format!("/{}", path.trim_end_matches('/')).replace("//", "/")))
}

pub fn run(args: LoadArgs) -> Result<()> {
    if args.concurrency == 0 || args.requests == 0 {
        bail!("--concurrency and --requests must be positive");
    }
    println!(
        "extender load: {} pairs per size (+{} warm-up), {} connections, {}",
        args.requests,
        args.warmup,
        args.concurrency,
        match &args.target {
            Some(t) => format!("target {t}"),
            None => format!(
                "in-process extender on 127.0.0.1, {} server threads",
                args.server_threads
            ),
        }
    );
    println!(
        "{:>7} {:>7} {:>7} {:>10} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "nodes", "names", "pairs", "p50 ms", "p99 ms", "max ms", "pods/s", "passed", "errors"
    );
    for &n in &args.nodes {
        let r = run_size(&args, n)?;
        println!(
            "{:>7} {:>7} {:>7} {:>10.3} {:>10.3} {:>10.3} {:>10.0} {:>8.0} {:>7}",
            r.nodes, r.names_per_request, r.pairs, r.p50_ms, r.p99_ms, r.max_ms, r.pods_per_s, r.passed_mean, r.errors
        );
    }
    Ok(())
}

/// Runs one cluster size and returns its figures.
pub fn run_size(args: &LoadArgs, n: usize) -> Result<LoadReport> {
    let names: Vec<String> = (0..n).map(fixture::node_name).collect();
    let per = args.nodes_per_request.unwrap_or(n).min(n).max(1);
    let pods = pod_mix(args.seed, 64);
    // In-process server on its own runtime.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.server_threads.max(1))
        .thread_name("extender")
        .enable_all()
        .build()?;
    let (addr, prefix) = match &args.target {
        Some(t) => parse_target(t)?,
        None => {
            let state = build_state(n, args.seed);
            let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
            let addr = listener.local_addr()?;
            let app = railyard_scheduler::app(Arc::new(state));
            server_rt.spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (addr, fixture::PREFIX.to_string())
        }
    };
    // Request bodies, built once: each pod shape against a window of names.
    let bodies: Vec<Vec<u8>> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let start = (i * 7919) % n;
            let window: Vec<&String> = names.iter().cycle().skip(start).take(per).collect();
            serde_json::to_vec(&serde_json::json!({"Pod": p, "Nodes": null, "NodeNames": window}))
        })
        .collect::<std::result::Result<_, _>>()?;
    let pods_json: Vec<Vec<u8>> = pods
        .iter()
        .map(serde_json::to_vec)
        .collect::<std::result::Result<_, _>>()?;
    let bodies = Arc::new(bodies);
    let pods_json = Arc::new(pods_json);

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.concurrency.clamp(1, 4))
        .enable_all()
        .build()?;
    let total = args.requests + args.warmup;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let measure_from = Arc::new(std::sync::OnceLock::<Instant>::new());
    let results = client_rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency {
            let (bodies, pods_json, next, prefix, measure_from) = (
                bodies.clone(),
                pods_json.clone(),
                next.clone(),
                prefix.clone(),
                measure_from.clone(),
            );
            let warmup = args.warmup;
            tasks.push(tokio::spawn(async move {
                let mut conn = client::Conn::connect(addr).await?;
                let mut out: Vec<(f64, usize, bool)> = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if i == warmup {
                        let _ = measure_from.set(Instant::now());
                    }
                    let k = i % bodies.len();
                    let t = Instant::now();
                    let (ok, passed) = pair(&mut conn, &prefix, &bodies[k], &pods_json[k]).await?;
                    let ms = t.elapsed().as_secs_f64() * 1e3;
                    if i >= warmup {
                        out.push((ms, passed, ok));
                    }
                }
                anyhow::Ok((out, Instant::now()))
            }));
        }
        let mut all = Vec::new();
        let mut end = Instant::now();
        for t in tasks {
            let (o, e) = t.await??;
            all.extend(o);
            end = end.max(e);
        }
        anyhow::Ok((all, end))
    })?;
    let (samples, end) = results;
    let wall = measure_from
        .get()
        .map_or(Duration::from_secs(1), |s| end.duration_since(*s))
        .as_secs_f64()
        .max(1e-9);
    let mut lat: Vec<f64> = samples.iter().map(|s| s.0).collect();
    lat.sort_by(f64::total_cmp);
    let errors = samples.iter().filter(|s| !s.2).count();
    let passed_mean = samples.iter().map(|s| s.1 as f64).sum::<f64>() / samples.len().max(1) as f64;
    drop(client_rt);
    server_rt.shutdown_timeout(Duration::from_millis(100));
    Ok(LoadReport {
        nodes: n,
        names_per_request: per,
        pairs: samples.len(),
        errors,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        pods_per_s: samples.len() as f64 / wall,
        passed_mean,
    })
}

/// One filter + prioritize pair: the prioritize body lists the nodes that
/// passed filter, cut out of the filter response without a full parse.
async fn pair(conn: &mut client::Conn, prefix: &str, filter_body: &[u8], pod: &[u8]) -> Result<(bool, usize)> {
    let (status, resp) = conn.post(&format!("{prefix}/filter"), filter_body).await?;
    if status != 200 {
        return Ok((false, 0));
    }
    let names = client::json_array_after(&resp, b"\"NodeNames\":").unwrap_or(b"[]");
    let passed = if names.len() > 2 {
        names.iter().filter(|&&b| b == b',').count() + 1
    } else {
        0
    };
    let mut body = Vec::with_capacity(names.len() + pod.len() + 48);
    body.extend_from_slice(b"{\"Pod\":");
    body.extend_from_slice(pod);
    body.extend_from_slice(b",\"Nodes\":null,\"NodeNames\":");
    body.extend_from_slice(names);
    body.push(b'}');
    let (status, _) = conn.post(&format!("{prefix}/prioritize"), &body).await?;
    Ok((status == 200, passed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(nodes_per_request: Option<usize>, concurrency: usize) -> LoadArgs {
        LoadArgs {
            nodes: vec![60],
            requests: 40,
            warmup: 5,
            concurrency,
            server_threads: 1,
            nodes_per_request,
            target: None,
            seed: 3,
        }
    }

    #[test]
    fn drives_filter_and_prioritize_over_http_without_errors() {
        for (per, conc) in [(None, 1), (Some(20), 2)] {
            let r = run_size(&args(per, conc), 60).expect("load run");
            assert_eq!(r.pairs, 40);
            assert_eq!(r.errors, 0, "every pair answered 200");
            assert_eq!(r.names_per_request, per.unwrap_or(60));
            // Half-used synthetic nodes: some pods fit somewhere, none fits everywhere.
            assert!(
                r.passed_mean > 0.0 && r.passed_mean < r.names_per_request as f64,
                "{r:?}"
            );
            assert!(r.p50_ms > 0.0 && r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms, "{r:?}");
            assert!(r.pods_per_s > 0.0);
        }
    }

    #[test]
    fn targets_must_be_loopback_http() {
        assert!(parse_target("https://127.0.0.1:8888/railyard").is_err());
        assert!(parse_target("http://10.0.0.1:8888/railyard").is_err());
        let (addr, prefix) = parse_target("http://localhost:8888/railyard/").expect("loopback");
        assert_eq!(addr.port(), 8888);
        assert_eq!(prefix, "/railyard");
    }
}
