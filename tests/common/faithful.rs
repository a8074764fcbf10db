//! Running `vmm` on a faithful KVM: directly when this host's /dev/kvm is
//! hardware KVM, otherwise inside the KVM box (tests/kvmbox), booted once for
//! the whole batch of cases.

use super::vmm_bin;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// One command of the batch: a name and the arguments to `vmm`.
pub struct Case {
    pub name: &'static str,
    pub args: Vec<String>,
}

/// What one case printed (stdout and stderr merged) and its status.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub output: String,
    pub status: i32,
}

/// Where the batch ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    Host,
    Box,
}

pub struct Batch {
    pub place: Where,
    pub results: HashMap<String, CaseResult>,
}

impl Batch {
    pub fn get(&self, name: &str) -> &CaseResult {
        self.results
            .get(name)
            .unwrap_or_else(|| panic!("case {name} produced no result; batch ran on {:?}", self.place))
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn host_is_hardware_kvm() -> bool {
    let out = Command::new(vmm_bin())
        .args(["kvm-info", "--json"])
        .output()
        .expect("run vmm kvm-info");
    String::from_utf8_lossy(&out.stdout).contains("\"hardware\":true")
}

/// Files (besides vmm) the cases refer to, as host paths; inside the box they
/// appear under /work/ with the same file name.
pub fn box_path(host: &Path) -> String {
    format!("/work/{}", host.file_name().unwrap().to_string_lossy())
}

const BEGIN: &str = "=== faithful-case-begin ";
const END: &str = "=== faithful-case-end ";

/// Run all `cases` once, on the host if it has hardware KVM, else in the box.
pub fn run_batch(cases: &[Case], files: &[PathBuf]) -> Batch {
    if host_is_hardware_kvm() && std::env::var_os("VMM_FORCE_KVMBOX").is_none() {
        let results = cases
            .iter()
            .map(|c| {
                let out = Command::new(vmm_bin())
                    .args(&c.args)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
                output += &String::from_utf8_lossy(&out.stderr);
                (
                    c.name.to_string(),
                    CaseResult {
                        output,
                        status: out.status.code().unwrap_or(-1),
                    },
                )
            })
            .collect();
        eprintln!("faithful suite: ran {} cases directly on hardware KVM", cases.len());
        return Batch {
            place: Where::Host,
            results,
        };
    }
    let kvmbox = repo_root().join("tests/kvmbox/kvmbox");
    let mut script = String::from("cd /work\n");
    for c in cases {
        let args: Vec<String> = c
            .args
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        script += &format!(
            "echo '{BEGIN}{n}'; /work/vmm {a} </dev/null 2>&1; echo \"{END}{n} $?\"\n",
            n = c.name,
            a = args.join(" ")
        );
    }
    let mut cmd = Command::new(&kvmbox);
    cmd.arg("--file").arg(format!("{}:/work/vmm", vmm_bin().display()));
    for f in files {
        cmd.arg("--file").arg(format!("{}:{}", f.display(), box_path(f)));
    }
    cmd.args(["--timeout", "900", "--", "sh", "-c", &script]);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("cannot start tests/kvmbox/kvmbox");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let msg = format!(
            "the KVM box failed (status {:?}); this host's /dev/kvm is not hardware KVM, so the \
             hardware-semantics tests need it. Install qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio.\n\
             --- box stdout\n{text}\n--- box stderr\n{err}",
            out.status.code()
        );
        if std::env::var("CI").as_deref() == Ok("true") || !err.contains("install") {
            panic!("{msg}");
        }
        panic!("{msg}\n(not skipped: the faithful suite must run; see README)");
    }
    let mut results = HashMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix(BEGIN) {
            current = Some((n.to_string(), String::new()));
        } else if let Some(rest) = line.strip_prefix(END) {
            let (n, status) = rest.rsplit_once(' ').unwrap();
            let (name, output) = current.take().unwrap_or_default();
            assert_eq!(name, n);
            results.insert(
                name,
                CaseResult {
                    output,
                    status: status.parse().unwrap(),
                },
            );
        } else if let Some((_, buf)) = current.as_mut() {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    eprintln!(
        "faithful suite: ran {} cases inside the KVM box (hardware SVM semantics)",
        results.len()
    );
    Batch {
        place: Where::Box,
        results,
    }
}

static BATCH: OnceLock<Batch> = OnceLock::new();

/// The shared batch for this test binary: the first test to ask boots the box.
pub fn batch(make: impl FnOnce() -> (Vec<Case>, Vec<PathBuf>)) -> &'static Batch {
    BATCH.get_or_init(|| {
        let (cases, files) = make();
        run_batch(&cases, &files)
    })
}
