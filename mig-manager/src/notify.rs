//! Telling the device plugin (and the DRA driver) that MIG devices changed,
//! so they re-read the inventory without a restart: a small file under the
//! device-plugin directory, replaced atomically after every change. Its
//! content is opaque to readers; any change means "re-read".

use std::io::Write;
use std::path::Path;

/// Default name of the file, in the device-plugin directory.
pub const LAYOUT_FILE_NAME: &str = "railyard-mig-layout";

/// Writes `generation=<n> gpus=<i,j,…>` to `path` atomically: temp file,
/// fsync, rename, fsync of the directory.
pub fn write_layout_file(path: &Path, generation: u128, gpus: &[u32]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(LAYOUT_FILE_NAME);
    let tmp = dir.join(format!(".{name}.tmp"));
    let gpus: Vec<String> = gpus.iter().map(u32::to_string).collect();
    {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "generation={generation} gpus={}", gpus.join(","))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_file_is_replaced_and_changes_each_time() {
        let dir = std::env::temp_dir().join(format!("railyard-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(super::LAYOUT_FILE_NAME);
        super::write_layout_file(&path, 1, &[0, 2]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "generation=1 gpus=0,2\n");
        super::write_layout_file(&path, 2, &[1]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "generation=2 gpus=1\n");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temp file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
