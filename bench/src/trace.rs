//! Parsing the openb node and pod lists (Alibaba cluster-trace-gpu-v2023).
//!
//! Columns are found by header name, so both pod-list layouts work: the
//! 11-column one (`name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,...`)
//! and the 5-column `multigpu*` one without `gpu_spec`.

use railyard_core::packing::{MAX_GPUS, MILLI, ModelMask, ModelTable, NodeSpec, PodRequest};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
    #[error("empty file: no header line")]
    Empty,
    #[error("header lacks column {0:?}")]
    MissingColumn(&'static str),
}

fn line_err(line: usize, message: impl Into<String>) -> TraceError {
    TraceError::Line {
        line,
        message: message.into(),
    }
}

/// A pod as the trace lists it; `gpu_spec` is resolved against the node
/// models later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracePod {
    pub name: String,
    pub line: usize,
    pub cpu_milli: u32,
    pub memory_mib: u32,
    pub num_gpu: u8,
    pub gpu_milli: u16,
    pub gpu_spec: String,
}

impl TracePod {
    pub fn request(&self, models: &ModelTable) -> PodRequest {
        PodRequest {
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            num_gpu: self.num_gpu,
            gpu_milli: self.gpu_milli,
            gpu_spec: if self.gpu_spec.is_empty() {
                ModelMask::ANY
            } else {
                models.mask(&self.gpu_spec)
            },
        }
    }
}

struct Csv<'a> {
    header: Vec<&'a str>,
    rows: Vec<(usize, Vec<&'a str>)>,
}

fn split(text: &str) -> Result<Csv<'_>, TraceError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, header) = lines.find(|(_, l)| !l.trim().is_empty()).ok_or(TraceError::Empty)?;
    let header: Vec<&str> = header.split(',').map(str::trim).collect();
    let mut rows = Vec::new();
    for (n, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(line_err(
                n,
                format!("expected {} fields, found {}", header.len(), fields.len()),
            ));
        }
        rows.push((n, fields));
    }
    Ok(Csv { header, rows })
}

impl Csv<'_> {
    fn col(&self, name: &'static str) -> Result<usize, TraceError> {
        self.header
            .iter()
            .position(|h| *h == name)
            .ok_or(TraceError::MissingColumn(name))
    }
}

fn num<T: std::str::FromStr>(line: usize, col: &str, v: &str) -> Result<T, TraceError> {
    v.parse()
        .map_err(|_| line_err(line, format!("{col}: {v:?} is not a valid number")))
}

/// Parses a node list (`sn,cpu_milli,memory_mib,gpu,model`).
pub fn parse_nodes(text: &str) -> Result<(Vec<NodeSpec>, ModelTable), TraceError> {
    let csv = split(text)?;
    let (c_name, c_cpu, c_mem, c_gpu, c_model) = (
        csv.col("sn")?,
        csv.col("cpu_milli")?,
        csv.col("memory_mib")?,
        csv.col("gpu")?,
        csv.col("model")?,
    );
    let mut models = ModelTable::default();
    let mut nodes = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let line = *line;
        let gpus: u8 = num(line, "gpu", f[c_gpu])?;
        if gpus as usize > MAX_GPUS {
            return Err(line_err(
                line,
                format!("gpu: {gpus} GPUs, at most {MAX_GPUS} per node are modelled"),
            ));
        }
        let model_name = f[c_model];
        let model = if model_name.is_empty() {
            None
        } else {
            Some(models.intern(model_name).map_err(|e| line_err(line, e.to_string()))?)
        };
        if gpus > 0 && model.is_none() {
            return Err(line_err(line, "model: a node with GPUs needs a model"));
        }
        nodes.push(NodeSpec {
            name: f[c_name].to_string(),
            cpu_milli: num(line, "cpu_milli", f[c_cpu])?,
            memory_mib: num(line, "memory_mib", f[c_mem])?,
            gpus,
            model,
        });
    }
    Ok((nodes, models))
}

/// Parses a pod list in either layout.
pub fn parse_pods(text: &str) -> Result<Vec<TracePod>, TraceError> {
    let csv = split(text)?;
    let (c_name, c_cpu, c_mem, c_num, c_milli) = (
        csv.col("name")?,
        csv.col("cpu_milli")?,
        csv.col("memory_mib")?,
        csv.col("num_gpu")?,
        csv.col("gpu_milli")?,
    );
    let c_spec = csv.col("gpu_spec").ok();
    let mut pods = Vec::with_capacity(csv.rows.len());
    for (line, f) in &csv.rows {
        let line = *line;
        let num_gpu: u8 = num(line, "num_gpu", f[c_num])?;
        let gpu_milli: u16 = num(line, "gpu_milli", f[c_milli])?;
        if gpu_milli > MILLI {
            return Err(line_err(
                line,
                format!("gpu_milli: {gpu_milli} is more than one GPU (1000)"),
            ));
        }
        if num_gpu == 0 && gpu_milli != 0 {
            return Err(line_err(line, format!("gpu_milli: {gpu_milli} with num_gpu 0")));
        }
        if num_gpu > 0 && gpu_milli == 0 {
            return Err(line_err(line, format!("gpu_milli: 0 with num_gpu {num_gpu}")));
        }
        if num_gpu > 1 && gpu_milli != MILLI {
            return Err(line_err(
                line,
                format!("gpu_milli: {gpu_milli}; a multi-GPU pod takes whole GPUs (1000)"),
            ));
        }
        pods.push(TracePod {
            name: f[c_name].to_string(),
            line,
            cpu_milli: num(line, "cpu_milli", f[c_cpu])?,
            memory_mib: num(line, "memory_mib", f[c_mem])?,
            num_gpu,
            gpu_milli,
            gpu_spec: c_spec.map(|c| f[c].to_string()).unwrap_or_default(),
        });
    }
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str =
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,12537496,0
openb-pod-0001,6000,12288,1,460,V100M16|T4,LS,Running,427061,12902960,427061
openb-pod-0002,8000,30517,0,0,,BE,Running,9565025,9586760,9565025
";

    const SHORT: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli
openb-pod-0000,12000,16384,8,1000
openb-pod-0001,6000,12288,1,460
";

    #[test]
    fn eleven_column_layout() {
        let pods = parse_pods(LONG).unwrap();
        assert_eq!(pods.len(), 3);
        assert_eq!(pods[1].gpu_spec, "V100M16|T4");
        assert_eq!(pods[1].gpu_milli, 460);
        assert_eq!(pods[1].line, 3);
        assert_eq!(pods[2].num_gpu, 0);
        let mut models = ModelTable::default();
        let t4 = models.intern("T4").unwrap();
        let g2 = models.intern("G2").unwrap();
        let req = pods[1].request(&models);
        assert!(req.gpu_spec.allows(Some(t4)) && !req.gpu_spec.allows(Some(g2)));
        assert!(req.is_share());
        assert!(pods[0].request(&models).gpu_spec.allows(Some(g2)));
    }

    #[test]
    fn five_column_layout() {
        let pods = parse_pods(SHORT).unwrap();
        assert_eq!(pods.len(), 2);
        assert_eq!(pods[0].num_gpu, 8);
        assert_eq!(pods[0].gpu_spec, "");
        assert_eq!(pods[1].name, "openb-pod-0001");
    }

    #[test]
    fn bad_rows_name_their_line() {
        let bad_num = format!("{SHORT}openb-pod-0002,abc,1,1,100\n");
        assert_eq!(
            parse_pods(&bad_num),
            Err(TraceError::Line {
                line: 4,
                message: "cpu_milli: \"abc\" is not a valid number".into()
            })
        );
        let short_row = format!("{SHORT}openb-pod-0002,1,1\n");
        assert!(matches!(parse_pods(&short_row), Err(TraceError::Line { line: 4, .. })));
        let shared_multi = format!("{SHORT}openb-pod-0002,1,1,2,500\n");
        assert!(matches!(
            parse_pods(&shared_multi),
            Err(TraceError::Line { line: 4, .. })
        ));
        let too_much = format!("{SHORT}\nopenb-pod-0002,1,1,1,1500\n");
        assert!(matches!(parse_pods(&too_much), Err(TraceError::Line { line: 5, .. })));
        assert_eq!(
            parse_pods("name,cpu_milli\n"),
            Err(TraceError::MissingColumn("memory_mib"))
        );
        assert_eq!(parse_pods(""), Err(TraceError::Empty));
    }

    #[test]
    fn node_list() {
        let text = "sn,cpu_milli,memory_mib,gpu,model
openb-node-0000,64000,262144,2,P100
openb-node-0001,96000,393216,8,G2
openb-node-0002,32000,262144,0,
";
        let (nodes, models) = parse_nodes(text).unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(models.len(), 2);
        assert_eq!(nodes[1].gpus, 8);
        assert_eq!(nodes[1].model, models.get("G2"));
        assert_eq!(nodes[2].model, None);
        let bad = "sn,cpu_milli,memory_mib,gpu,model\nx,1,1,17,G2\n";
        assert!(matches!(parse_nodes(bad), Err(TraceError::Line { line: 2, .. })));
        let no_model = "sn,cpu_milli,memory_mib,gpu,model\nx,1,1,2,\n";
        assert!(matches!(parse_nodes(no_model), Err(TraceError::Line { line: 2, .. })));
    }
}
