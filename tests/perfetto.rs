//! `--perfetto OUT.json`: funcgraph's call tree and strace's calls as Chrome
//! trace-event JSON, produced by a real guest on this host's /dev/kvm and
//! checked against the format: a `traceEvents` array whose events carry
//! name, ph, ts (µs), pid and tid; B/E pairs that nest, X events with dur.

mod common;
use common::programs::programs;
use common::vmm;
use serde_json::Value;

fn events(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("the trace file was written");
    let v: Value = serde_json::from_str(&text).expect("the trace file is JSON");
    v["traceEvents"].as_array().expect("a traceEvents array").clone()
}

/// The fields every trace event has, with their types.
fn check_fields(e: &Value) {
    assert!(e["name"].is_string(), "name: {e}");
    let ph = e["ph"].as_str().unwrap_or_else(|| panic!("ph: {e}"));
    assert!(["B", "E", "X", "M"].contains(&ph), "phase {ph}: {e}");
    assert!(e["ts"].as_f64().is_some_and(|t| t >= 0.0), "ts: {e}");
    assert!(e["pid"].is_u64() && e["tid"].is_u64(), "pid/tid: {e}");
    if ph == "X" {
        assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0), "dur: {e}");
    }
}

#[test]
fn funcgraph_writes_nested_begin_end_events() {
    let out = std::env::temp_dir().join(format!("vmm-perfetto-fg-{}.json", std::process::id()));
    let r = vmm(&[
        "trace",
        "--funcgraph",
        "kernel::console::sys_write",
        "--perfetto",
        &out.display().to_string(),
        "--",
        &programs().hello_asm.display().to_string(),
    ]);
    r.assert_status(0).stderr_has("vmm: perfetto: ");
    let evs = events(&out);
    let _ = std::fs::remove_file(&out);
    let mut stack: Vec<String> = Vec::new();
    let mut last_ts = 0.0;
    let mut begins = 0;
    for e in &evs {
        check_fields(e);
        let name = e["name"].as_str().unwrap().to_string();
        match e["ph"].as_str().unwrap() {
            "B" => {
                begins += 1;
                stack.push(name)
            }
            "E" => assert_eq!(stack.pop().as_deref(), Some(name.as_str()), "E closes the innermost B"),
            _ => continue,
        }
        let ts = e["ts"].as_f64().unwrap();
        assert!(ts >= last_ts, "timestamps go forward: {e}");
        last_ts = ts;
    }
    assert!(stack.is_empty(), "every B has its E: {stack:?}");
    assert!(begins >= 2, "sys_write and the function it calls: {evs:?}");
    assert!(evs
        .iter()
        .any(|e| e["name"] == "kernel::console::sys_write" && e["ph"] == "B"));
    assert!(evs.iter().any(|e| e["name"] == "kernel::serial::console_write"));
}

#[test]
fn strace_writes_one_complete_event_per_call() {
    let out = std::env::temp_dir().join(format!("vmm-perfetto-st-{}.json", std::process::id()));
    let r = vmm(&[
        "run",
        "--strace",
        "--perfetto",
        &out.display().to_string(),
        "--",
        &programs().musl.display().to_string(),
        "x",
    ]);
    r.assert_status(0);
    let evs = events(&out);
    let _ = std::fs::remove_file(&out);
    evs.iter().for_each(check_fields);
    let calls: Vec<&Value> = evs.iter().filter(|e| e["ph"] == "X").collect();
    let lines = r.stderr.lines().filter(|l| l.starts_with("[pid ")).count();
    assert_eq!(calls.len(), lines, "one X event per strace line\n{}", r.stderr);
    assert!(calls.iter().any(|e| e["name"] == "writev"), "{calls:?}");
    assert!(calls.iter().any(|e| e["name"] == "exit_group"), "{calls:?}");
    assert!(calls
        .iter()
        .all(|e| e["args"]["call"].as_str().is_some_and(|c| c.starts_with("[pid "))));
}

#[test]
fn perfetto_needs_a_stream_and_a_writable_path() {
    let prog = programs().hello_asm.display().to_string();
    let r = vmm(&["run", "--perfetto", "/tmp/x.json", "--", &prog]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("add --strace"), "{}", r.stderr);
    let r = vmm(&["run", "--strace", "--perfetto", "/nonexistent-dir/x.json", "--", &prog]);
    assert_ne!(r.status, 0);
    assert!(r.stderr.contains("--perfetto /nonexistent-dir/x.json"), "{}", r.stderr);
}
