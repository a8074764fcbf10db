//! `vmm bench` smoke test: every row is there and the JSON records its
//! environment. No timing thresholds: timings depend on the host.

mod common;

use common::vmm;

#[test]
fn quick_bench_has_every_row_and_the_environment() {
    let dir = std::env::temp_dir().join(format!("vmm-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json_path = dir.join("bench.json");
    let plot_dir = dir.join("plots");
    let run = vmm(&[
        "bench",
        "--quick",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        plot_dir.to_str().unwrap(),
    ]);
    run.assert_status(0);
    for m in [
        "getpid via syscall",
        "getpid via int 0x80",
        "null hypercall",
        "environment:",
    ] {
        run.stdout_has(m);
    }

    let text = std::fs::read_to_string(&json_path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let env = &v["environment"];
    for k in [
        "cpu_model",
        "guest_tsc_khz",
        "host_tsc_khz_calibrated",
        "kvm_flavor",
        "kvmbox",
        "host_kernel",
        "mitigations",
    ] {
        assert!(!env[k].is_null(), "environment lacks {k}: {env}");
    }
    let rows = v["guest"]["rows"].as_array().expect("guest.rows");
    for id in ["0", "1", "2", "3", "4a", "4b", "5a", "5b", "5c", "5d", "6", "7", "8"] {
        let r = rows
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("guest row {id} missing:\n{}", run.stdout));
        let n = r["n"].as_u64().unwrap();
        assert!(n > 0, "guest row {id} has n = 0");
        assert_eq!(r["samples"].as_array().unwrap().len() as u64, n, "row {id} samples");
    }
    let skipped = v["guest"]["skipped"].as_array().unwrap();
    assert!(skipped.is_empty(), "no guest row may be skipped: {skipped:?}");
    let host = v["host"]["rows"].as_array().expect("host.rows");
    for id in ["0", "2", "4a", "4b", "5a", "5b", "5c", "6", "8"] {
        let r = host
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("host row {id} missing"));
        assert!(r["n"].as_u64().unwrap() > 0, "host row {id} has n = 0");
    }
    for id in ["1", "2", "3"] {
        assert!(
            std::fs::read_dir(&plot_dir).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("row{id}-"))),
            "no histogram for row {id}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
