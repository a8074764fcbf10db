//! `vmm trace --record` and `vmm replay` on this host's /dev/kvm: a system
//! call's kernel path recorded step by step, then replayed without KVM —
//! backwards too. On a PVM host the recording stays in ring 0 (it ends
//! before the return to ring 3); ring-3 steps need hardware KVM or the box.

mod common;
use common::programs::programs;
use common::vmm;
use serde_json::Value;

fn pvm() -> bool {
    vmm(&["kvm-info", "--json"]).stdout.contains("\"pvm\":true")
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vmm-replay-{}-{name}", std::process::id()))
}

/// Record hello_asm's write from the system-call entry; the file's lines.
fn record(name: &str, steps: &str) -> (std::path::PathBuf, Vec<Value>) {
    let file = temp(name);
    let r = vmm(&[
        "trace",
        "--record",
        &file.display().to_string(),
        "--steps",
        steps,
        "--",
        &programs().hello_asm.display().to_string(),
    ]);
    r.assert_status(0).stderr_has("vmm: record: ");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    (file, lines)
}

#[test]
fn a_recording_has_a_header_steps_with_changed_registers_and_writes() {
    let (file, lines) = record("basic.jsonl", "100000");
    let _ = std::fs::remove_file(&file);
    assert_eq!(lines[0]["format"], "vmm-trace");
    assert_eq!(lines[0]["version"], 1);
    let steps: Vec<&Value> = lines.iter().filter(|l| l.get("step").is_some()).collect();
    assert!(steps.len() > 10, "{} steps", steps.len());
    assert_eq!(steps[0]["step"], 0);
    assert_eq!(
        steps[0]["regs"].as_object().unwrap().len(),
        18,
        "all registers at step 0"
    );
    assert!(steps[0]["sregs"]["cr3"].is_string());
    assert!(steps[1]["regs"]["rip"].is_string(), "RIP changes every step");
    assert!(steps
        .iter()
        .all(|s| s["cpl"].is_u64() && s["insn"].is_string() && s["sym"].is_string()));
    // A push writes the stack: old and new bytes, from the decoded operand.
    let push = steps
        .iter()
        .find(|s| s["insn"].as_str().unwrap().starts_with("push") && !s["writes"].is_null())
        .expect("a push with its write");
    assert_eq!(push["writes"][0]["old"].as_str().unwrap().len(), 16);
    assert_eq!(push["writes"][0]["new"].as_str().unwrap().len(), 16);
    assert!(lines.iter().any(|l| l.get("page").is_some()));
    let end = lines.last().unwrap();
    assert!(end["end"].is_string(), "{end}");
    if pvm() {
        // It ends before the return to ring 3, which PVM cannot step.
        assert!(end["end"].as_str().unwrap().contains("returns to ring 3"), "{end}");
        let last = steps.last().unwrap()["insn"].as_str().unwrap().to_string();
        assert!(last.starts_with("iretq") || last.starts_with("sysretq"), "{last}");
    }
}

#[test]
fn record_refuses_huge_step_counts_and_ring3_starts_on_pvm() {
    let r = vmm(&["trace", "--record", "/tmp/never", "--steps", "2000000"]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("2000000 is not in 1..=1000000"), "{}", r.stderr);
    if pvm() {
        let prog = programs().hello_asm.display().to_string();
        let r = vmm(&["trace", "--record", "/tmp/never", "--from", "_start", "--", &prog]);
        assert_ne!(r.status, 0);
        assert!(r.stderr.contains("--record --from _start"), "{}", r.stderr);
        assert!(r.stderr.contains("KVM box"), "{}", r.stderr);
    }
}

#[test]
fn replay_goes_back_and_shows_memory_as_it_was() {
    let (file, lines) = record("mem.jsonl", "100000");
    // A step whose write changed memory.
    let (k, w) = lines
        .iter()
        .filter(|l| l.get("step").is_some())
        .find_map(|s| {
            let w = s["writes"].as_array()?.iter().find(|w| w["old"] != w["new"])?.clone();
            Some((s["step"].as_u64().unwrap(), w))
        })
        .expect("an instruction that changed memory");
    let va = w["va"].as_str().unwrap().to_string();
    let n = w["old"].as_str().unwrap().len() / 2;
    let as_bytes = |hex: &str| -> String {
        (0..hex.len() / 2)
            .map(|i| format!("{:#04x}", u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (old, new) = (
        as_bytes(w["old"].as_str().unwrap()),
        as_bytes(w["new"].as_str().unwrap()),
    );
    let x = format!("x/{n}b {va}");
    let goto = format!("goto {k}");
    let r = vmm(&[
        "replay",
        &file.display().to_string(),
        "--batch",
        "-x",
        &goto,
        "-x",
        &x,
        "-x",
        "stepi",
        "-x",
        &x,
        "-x",
        "reverse-stepi",
        "-x",
        &x,
        "-x",
        "regs",
        "-x",
        "info transitions",
    ]);
    let _ = std::fs::remove_file(&file);
    r.assert_status(0)
        .stdout_has(&format!("step {k}: CPL 0"))
        .stdout_has("rflags ");
    let shown: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with(&va)).collect();
    assert_eq!(shown.len(), 3, "{}", r.stdout);
    assert!(
        shown[0].ends_with(&old),
        "before the store: old bytes {old}\n{}",
        r.stdout
    );
    assert!(shown[1].ends_with(&new), "after it: new bytes {new}\n{}", r.stdout);
    assert!(shown[2].ends_with(&old), "back again: old bytes\n{}", r.stdout);
    if pvm() {
        // Ring 0 only here: no privilege changes to list.
        r.stdout_has("no CPL changes in this recording");
    }
}

#[test]
fn replay_refuses_what_is_not_a_recording() {
    let f = common::temp_file("not-a-recording", b"hello\n");
    let r = vmm(&["replay", &f.display().to_string(), "--batch"]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("not a vmm recording"), "{}", r.stderr);
    assert!(r.stderr.contains("vmm trace --record"), "{}", r.stderr);
}

/// The page's embedded recording.
fn page_data(page: &str) -> Value {
    let start = page.find(r#"id="data">"#).expect("the data element") + r#"id="data">"#.len();
    let end = start + page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..end]).expect("the embedded recording is JSON")
}

// Checked structurally (no browser in the test suite): the page is
// self-contained, embeds every recorded step, and has the lanes, list and
// register panel its script fills.
#[test]
fn html_page_is_self_contained_and_matches_the_recording() {
    let html = temp("page.html");
    let rec = temp("page.jsonl");
    let r = vmm(&[
        "trace",
        "--html",
        &html.display().to_string(),
        "--record",
        &rec.display().to_string(),
        "--steps",
        "100000",
        "--",
        &programs().hello_asm.display().to_string(),
    ]);
    r.assert_status(0).stderr_has("vmm: html: ");
    let page = std::fs::read_to_string(&html).unwrap();
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let steps = recorded.lines().filter(|l| l.starts_with(r#"{"step""#)).count();
    assert!(steps > 10);
    for needed in [
        r#"id="lanes""#,
        r#"id="list""#,
        r#"id="regs""#,
        r#"id="sregs""#,
        "CPL transitions",
    ] {
        assert!(page.contains(needed), "the page lacks {needed}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://") && !page.contains("src="),
        "no network"
    );
    let data = page_data(&page);
    assert_eq!(data["steps"].as_array().unwrap().len(), steps);
    assert_eq!(data["reg_names"].as_array().unwrap().len(), 18);
    // The same page from the recording file, with no guest.
    let again = temp("again.html");
    let r = vmm(&[
        "trace",
        "--html",
        &again.display().to_string(),
        "--from-recording",
        &rec.display().to_string(),
    ]);
    r.assert_status(0);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);
    for f in [html, rec, again] {
        let _ = std::fs::remove_file(f);
    }
}

/// Debian's chromium, which tests/run-all --install-deps installs.
fn chromium() -> std::path::PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(c).output() {
            if out.status.success() {
                return std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("no chromium: the page is tested in a real headless browser; install it with `tests/run-all --install-deps` (or apt-get install chromium)");
}

// The page in a real headless browser: it loads without console errors,
// shows the step and transition counts the recording has, and a click on
// a step's row (page#click=N dispatches a real click event on that row)
// fills the register panel with that step, changed registers highlighted.
#[test]
fn html_page_works_in_headless_chromium() {
    let html = temp("browser.html");
    let rec = temp("browser.jsonl");
    let r = vmm(&[
        "trace",
        "--html",
        &html.display().to_string(),
        "--record",
        &rec.display().to_string(),
        "--steps",
        "100000",
        "--",
        &programs().hello_asm.display().to_string(),
    ]);
    r.assert_status(0);
    let recorded = std::fs::read_to_string(&rec).unwrap();
    let steps = recorded.lines().filter(|l| l.starts_with(r#"{"step""#)).count();
    let transitions = recorded.matches(r#""transition""#).count();
    let profile = temp("chromium-profile");
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            &format!("file://{}#click=5", html.display()),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = std::fs::remove_dir_all(&profile);
    for f in [html, rec] {
        let _ = std::fs::remove_file(f);
    }
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(
        console.iter().all(|l| !l.contains("Uncaught") && !l.contains("Error")),
        "console errors: {console:?}"
    );
    assert!(
        dom.contains(&format!("{steps} steps from do_trap")) || dom.contains(&format!("{steps} steps from ")),
        "{dom}"
    );
    assert!(dom.contains(&format!(", {transitions} CPL transitions")), "{dom}");
    assert!(
        dom.contains(r#"id="step">step 5: CPL 0"#),
        "the click selected step 5\n{dom}"
    );
    assert!(
        dom.contains(r#"class="row cpl0 sel""#),
        "the clicked row is highlighted"
    );
    assert!(dom.contains(r#"class="changed""#), "changed registers are highlighted");
    // Virtualised: far fewer rows in the DOM than steps.
    let rows = dom.matches(r#"class="row "#).count();
    assert!(rows > 0 && rows < steps, "{rows} rows for {steps} steps");
}
