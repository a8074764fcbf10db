//! Boot benchmark: where the time of one `vmm run` goes, and how it compares
//! with the least any KVM user must pay for a VM of the same size.
//!
//! `cargo bench -p vmm --bench boot` runs the release `vmm` binary end to end
//! `BOOT_BENCH_RUNS` times (default 30), then measures in-process the bare KVM
//! floor (create VM + 64 MiB + vCPU + KVM_RUN to HLT + teardown) and the cost
//! of spawning `/bin/true`. It prints a table and writes target/bench/boot.json.
//! No timing threshold fails it: it exits non-zero only when something breaks.

mod common;
use common::{count_from_env, vmm_binary};
use kvm_bindings::{kvm_regs, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};
use vmm::arch::paging::{PageTableBuilder, PTE_A, PTE_G};
use vmm::arch::regs::{setup_sregs, CpuFeatures};
use vmm_abi::layout::{phys, KERNEL_BASE, KERNEL_PHYS_LOAD};

const MEM_MIB: u64 = 64;
const DEFAULT_RUNS: usize = 30;
/// In-process repetitions of the floor and of `/bin/true`: cheap, so fixed.
const FLOOR_RUNS: usize = 30;
const RSS_TARGET_MIB: f64 = 4.0;
const SHARE_TARGET: f64 = 1.5;

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("boot bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> Res<()> {
    let runs = count_from_env("BOOT_BENCH_RUNS", DEFAULT_RUNS)?;
    let bin = vmm_binary()?;
    // Fail early with a clear message rather than from inside a vmm run.
    Kvm::new().map_err(|e| format!("cannot open /dev/kvm ({e}): this benchmark needs KVM"))?;

    // One uncounted run warms the page cache and the dynamic loader's files.
    run_vmm(&bin)?;
    let samples = (0..runs).map(|_| run_vmm(&bin)).collect::<Res<Vec<_>>>()?;
    let (real, long) = measure_floor()?;
    let spawn_true = measure_spawn_true()?;

    let long = Floor::new(FloorMode::LongMode, &long);
    let report = Report::new(
        &samples,
        real.map(|r| Floor::new(FloorMode::RealMode, &r)),
        long,
        &spawn_true,
    );
    print!("{}", report.table());
    let json_path = bin
        .parent()
        .and_then(Path::parent)
        .map(|t| t.join("bench/boot.json"))
        .ok_or("no target dir")?;
    std::fs::create_dir_all(json_path.parent().unwrap()).map_err(|e| format!("create {}: {e}", json_path.display()))?;
    let json = serde_json::to_string_pretty(&report.json()).map_err(|e| format!("boot.json: {e}"))? + "\n";
    std::fs::write(&json_path, json).map_err(|e| format!("write {}: {e}", json_path.display()))?;
    println!("wrote {}", json_path.display());
    Ok(())
}

/// What the benchmark reads of `vmm run --stats=json` (vmm/src/report.rs).
#[derive(serde::Deserialize)]
struct RunStats {
    kvm_setup_us: u64,
    load_us: u64,
    in_kvm_run_us: u64,
    total_us: u64,
    exits: u64,
    pio_exits: u64,
}

/// One `vmm run --stats=json`, as the process's parent sees it.
struct Sample {
    wall: Duration,
    kvm_setup_us: f64,
    load_us: f64,
    in_kvm_run_us: f64,
    total_us: f64,
    exits: u64,
    pio_exits: u64,
    max_rss_kib: u64,
}

fn run_vmm(bin: &Path) -> Res<Sample> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        // The boot itself: banner, then exit without starting init (the
        // built-in init's tour is a demonstration, not boot time).
        .args(["run", "--stats=json", "--cmdline", "init=none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    // wait4 rather than Child::wait: it also returns this child's own rusage.
    // The stderr pipe holds the few lines vmm writes, so waiting first cannot block it.
    let (status, rusage) = wait4(child.id() as libc::pid_t)?;
    let wall = t0.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .map_err(|e| format!("read vmm stderr: {e}"))?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "`vmm run --stats=json` failed (wait status {status:#x}); stderr:\n{stderr}"
        ));
    }
    let line = stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no --stats=json line in vmm's stderr:\n{stderr}"))?;
    let st: RunStats = serde_json::from_str(line).map_err(|e| format!("vmm's --stats=json line: {e}: {line}"))?;
    Ok(Sample {
        wall,
        kvm_setup_us: st.kvm_setup_us as f64,
        load_us: st.load_us as f64,
        in_kvm_run_us: st.in_kvm_run_us as f64,
        total_us: st.total_us as f64,
        exits: st.exits,
        pio_exits: st.pio_exits,
        max_rss_kib: rusage.ru_maxrss as u64,
    })
}

fn wait4(pid: libc::pid_t) -> Res<(libc::c_int, libc::rusage)> {
    let mut status = 0;
    // SAFETY: rusage is plain old data; both pointers are valid for the call.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above; pid is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        if r == pid {
            return Ok((status, rusage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {err}"));
        }
    }
}

/// Spawn + exit of the smallest process: what any VMM-as-a-process pays
/// before its own code runs.
fn measure_spawn_true() -> Res<Vec<f64>> {
    (0..=FLOOR_RUNS)
        .map(|_| {
            let t = Instant::now();
            let st = Command::new("/bin/true")
                .status()
                .map_err(|e| format!("spawn /bin/true: {e}"))?;
            if !st.success() {
                return Err("/bin/true failed".into());
            }
            Ok(ms(t.elapsed()))
        })
        .skip(1) // warm-up
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FloorMode {
    /// `hlt` at 0x1000 with CS base 0: no tables at all.
    RealMode,
    /// One page mapped at the kernel's address, 64-bit state as vmm sets it.
    LongMode,
}

impl FloorMode {
    fn name(self) -> &'static str {
        match self {
            FloorMode::RealMode => "real mode",
            FloorMode::LongMode => "64-bit long mode, 1 mapped page",
        }
    }
}

/// Per-phase times of one bare VM, in ms.
#[derive(Default, Clone)]
struct FloorSample {
    create_vm: f64,
    memory: f64,
    vcpu: f64,
    state: f64,
    run: f64,
    teardown: f64,
}

impl FloorSample {
    fn total(&self) -> f64 {
        self.create_vm + self.memory + self.vcpu + self.state + self.run + self.teardown
    }
}

/// The floor in both modes. Real mode is the cheapest way to reach `hlt`
/// (no tables, no CPUID) but may be refused (PVM is documented as 64-bit
/// only): then it is `None`. Long mode is the state vmm itself must build.
type Floors = (Option<Vec<FloorSample>>, Vec<FloorSample>);

fn measure_floor() -> Res<Floors> {
    let series = |mode| (0..FLOOR_RUNS).map(|_| bare_vm(mode)).collect::<Res<Vec<_>>>();
    // The first call of each mode is an uncounted warm-up.
    let real = match bare_vm(FloorMode::RealMode) {
        Ok(_) => Some(series(FloorMode::RealMode)?),
        Err(e) => {
            eprintln!("boot bench: real mode refused ({e}); the floor uses long mode");
            None
        }
    };
    bare_vm(FloorMode::LongMode).map_err(|e| format!("bare KVM floor in long mode: {e}"))?;
    Ok((real, series(FloorMode::LongMode)?))
}

fn bare_vm(mode: FloorMode) -> Res<FloorSample> {
    let kerr = |what: &'static str| move |e: kvm_ioctls::Error| format!("{what}: {e}");
    let mut s = FloorSample::default();

    let t = Instant::now();
    let kvm = Kvm::new().map_err(kerr("open /dev/kvm"))?;
    let vm = kvm.create_vm().map_err(kerr("KVM_CREATE_VM"))?;
    s.create_vm = ms(t.elapsed());

    let t = Instant::now();
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), (MEM_MIB << 20) as usize)])
        .map_err(|e| format!("mmap: {e}"))?;
    let region = mem.iter().next().ok_or("no memory region")?;
    let host = region
        .get_host_address(MemoryRegionAddress(0))
        .map_err(|e| e.to_string())?;
    let r = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: the mapping is owned by `mem`, dropped only after the VM fd.
    unsafe { vm.set_user_memory_region(r) }.map_err(kerr("KVM_SET_USER_MEMORY_REGION"))?;
    s.memory = ms(t.elapsed());

    let t = Instant::now();
    let vcpu = vm.create_vcpu(0).map_err(kerr("KVM_CREATE_VCPU"))?;
    if mode == FloorMode::LongMode {
        // KVM accepts EFER.LME/NXE only once the guest CPUID offers LM and NX.
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kerr("KVM_GET_SUPPORTED_CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(kerr("KVM_SET_CPUID2"))?;
    }
    s.vcpu = ms(t.elapsed());

    let t = Instant::now();
    let mut sregs = vcpu.get_sregs().map_err(kerr("KVM_GET_SREGS"))?;
    let rip = match mode {
        FloorMode::RealMode => {
            mem.write_slice(&[0xf4], GuestAddress(0x1000))
                .map_err(|e| e.to_string())?;
            // Reset state is CS = 0xf000 with base 0xffff0000; point CS:IP at 0:0x1000.
            sregs.cs.base = 0;
            sregs.cs.selector = 0;
            0x1000
        }
        FloorMode::LongMode => {
            mem.write_slice(&[0xf4], GuestAddress(KERNEL_PHYS_LOAD))
                .map_err(|e| e.to_string())?;
            let mut pt =
                PageTableBuilder::new(&mem, phys::PAGE_TABLES, phys::PAGE_TABLES_END).map_err(|e| e.to_string())?;
            pt.map_4k(KERNEL_BASE + KERNEL_PHYS_LOAD, KERNEL_PHYS_LOAD, PTE_G | PTE_A)
                .map_err(|e| e.to_string())?;
            setup_sregs(&mut sregs, pt.pml4, CpuFeatures::default(), 0);
            KERNEL_BASE + KERNEL_PHYS_LOAD
        }
    };
    vcpu.set_sregs(&sregs).map_err(kerr("KVM_SET_SREGS"))?;
    vcpu.set_regs(&kvm_regs {
        rip,
        rflags: 2,
        ..Default::default()
    })
    .map_err(kerr("KVM_SET_REGS"))?;
    s.state = ms(t.elapsed());

    let mut vcpu = vcpu;
    let t = Instant::now();
    match vcpu.run() {
        Ok(VcpuExit::Hlt) => {}
        Ok(other) => return Err(format!("KVM_RUN: expected HLT, got {other:?}")),
        Err(e) => return Err(format!("KVM_RUN: {e}")),
    }
    s.run = ms(t.elapsed());
    // Proof that the guest really executed `hlt`: RIP stepped past it.
    let after = vcpu.get_regs().map_err(kerr("KVM_GET_REGS"))?.rip;
    if after != rip + 1 {
        return Err(format!("HLT exit with RIP {after:#x}, expected {:#x}", rip + 1));
    }

    // Same order as vmm's Vm: vCPU, VM, then memory and the /dev/kvm fd.
    let t = Instant::now();
    drop(vcpu);
    drop(vm);
    drop(mem);
    drop(kvm);
    s.teardown = ms(t.elapsed());
    Ok(s)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, min and max.
#[derive(Clone, Copy, Serialize)]
struct Stat {
    #[serde(serialize_with = "four_places")]
    median: f64,
    #[serde(serialize_with = "four_places")]
    min: f64,
    #[serde(serialize_with = "four_places")]
    max: f64,
}

/// Milliseconds to a tenth of a microsecond: more digits would be noise.
fn four_places<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((v * 1e4).round() / 1e4)
}

impl Stat {
    fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut v: Vec<f64> = values.into_iter().collect();
        assert!(!v.is_empty());
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

/// Summary of one floor series.
struct Floor {
    mode: FloorMode,
    total: Stat,
    phases: [(&'static str, Stat); 6],
}

impl Floor {
    fn new(mode: FloorMode, v: &[FloorSample]) -> Floor {
        let st = |f: fn(&FloorSample) -> f64| Stat::of(v.iter().map(f));
        Floor {
            mode,
            total: st(FloorSample::total),
            phases: [
                ("create_vm", st(|x| x.create_vm)),
                ("memory", st(|x| x.memory)),
                ("vcpu", st(|x| x.vcpu)),
                ("state", st(|x| x.state)),
                ("kvm_run", st(|x| x.run)),
                ("teardown", st(|x| x.teardown)),
            ],
        }
    }

    fn phases_text(&self) -> String {
        let p: Vec<String> = self
            .phases
            .iter()
            .map(|(n, s)| format!("{n} {:.3}", s.median))
            .collect();
        p.join(", ")
    }
}

/// `{"mode": …, "total": {…}, "create_vm": {…}, …}`: the phases beside the total.
impl Serialize for Floor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2 + self.phases.len()))?;
        m.serialize_entry("mode", self.mode.name())?;
        m.serialize_entry("total", &self.total)?;
        for (name, stat) in &self.phases {
            m.serialize_entry(name, stat)?;
        }
        m.end()
    }
}

struct Report {
    runs: usize,
    cpu: String,
    kvm: &'static str,
    wall: Stat,
    kvm_setup: Stat,
    load: Stat,
    in_kvm_run: Stat,
    other_in_main: Stat,
    process_teardown: Stat,
    vmm_share: Stat,
    rss_mib: Stat,
    exits: Stat,
    pio_exits: Stat,
    /// The cheapest floor that works: real mode where KVM allows it.
    floor: Floor,
    /// The long-mode floor when `floor` is real mode.
    floor_long: Option<Floor>,
    spawn_true: Stat,
}

impl Report {
    fn new(s: &[Sample], real: Option<Floor>, long: Floor, spawn_true: &[f64]) -> Report {
        let us = |f: fn(&Sample) -> f64| Stat::of(s.iter().map(|x| f(x) / 1e3));
        let (floor, floor_long) = match real {
            Some(r) => (r, Some(long)),
            None => (long, None),
        };
        Report {
            runs: s.len(),
            cpu: vmm::bench::cpu_model(),
            kvm: vmm::vstate::kvm_info::detect_flavor(Path::new("/sys/module")).name(),
            wall: Stat::of(s.iter().map(|x| ms(x.wall))),
            kvm_setup: us(|x| x.kvm_setup_us),
            load: us(|x| x.load_us),
            in_kvm_run: us(|x| x.in_kvm_run_us),
            // Inside main() but in none of vmm's timed phases: argument
            // parsing, the image parse, printing the stats.
            other_in_main: us(|x| x.total_us - x.kvm_setup_us - x.load_us - x.in_kvm_run_us),
            // total_us ends after the run: what is left is exec, dynamic
            // linking, Rust runtime start, VM teardown and process exit.
            process_teardown: Stat::of(s.iter().map(|x| ms(x.wall) - x.total_us / 1e3)),
            vmm_share: Stat::of(s.iter().map(|x| ms(x.wall) - x.in_kvm_run_us / 1e3)),
            rss_mib: Stat::of(s.iter().map(|x| x.max_rss_kib as f64 / 1024.0)),
            exits: Stat::of(s.iter().map(|x| x.exits as f64)),
            pio_exits: Stat::of(s.iter().map(|x| x.pio_exits as f64)),
            floor,
            floor_long,
            spawn_true: Stat::of(spawn_true.iter().copied()),
        }
    }

    fn ratio(&self) -> f64 {
        self.vmm_share.median / self.floor.total.median
    }

    fn rss_ok(&self) -> bool {
        self.rss_mib.max <= RSS_TARGET_MIB
    }

    fn table(&self) -> String {
        let row = |name: &str, s: Stat| format!("{name:<25}{:>6.2} ms {:>6.2} ms {:>6.2} ms\n", s.median, s.min, s.max);
        let mut t = format!(
            "boot benchmark: {} runs of `vmm run` (built-in guest, {MEM_MIB} MiB), host: {}, KVM: {}\n",
            self.runs, self.cpu, self.kvm
        );
        t += &format!("{:<25}{:>9} {:>9} {:>9}\n", "", "median", "min", "max");
        t += &row("end to end (wall)", self.wall);
        t += &row("  kvm setup", self.kvm_setup);
        t += &row("  image load + tables", self.load);
        t += &row("  inside KVM_RUN", self.in_kvm_run);
        t += &row("  other, inside main()", self.other_in_main);
        t += &row("  process + teardown", self.process_teardown);
        t += &row("VMM's own share", self.vmm_share);
        let r = self.rss_mib;
        t += &format!(
            "{:<25}{:>6.1} MiB{:>6.1} MiB{:>6.1} MiB\n",
            "max RSS", r.median, r.min, r.max
        );
        t += &format!(
            "{:<25}{} (PIO {})\n",
            "VM exits per boot", self.exits.median, self.pio_exits.median
        );
        t += &format!(
            "bare KVM floor (create VM + {MEM_MIB} MiB + vCPU + KVM_RUN to HLT + teardown): {:.2} ms  [{}]\n",
            self.floor.total.median,
            self.floor.mode.name()
        );
        t += &format!("  phases (ms): {}\n", self.floor.phases_text());
        if let Some(l) = &self.floor_long {
            t += &format!("  same in {}: {:.2} ms\n", l.mode.name(), l.total.median);
            t += &format!("  phases (ms): {}\n", l.phases_text());
        }
        t += &format!("  spawn+exit of /bin/true: {:.2} ms\n", self.spawn_true.median);
        t += &format!("VMM share / floor = {:.2}  (target <= {SHARE_TARGET})\n", self.ratio());
        let rss = if self.rss_ok() { "ok" } else { "over" };
        t += &format!("max RSS target <= {RSS_TARGET_MIB} MiB: {rss}\n");
        t
    }

    fn json(&self) -> ReportJson<'_> {
        ReportJson {
            runs: self.runs,
            mem_mib: MEM_MIB,
            host_cpu: &self.cpu,
            kvm: self.kvm,
            unit: "ms",
            wall: self.wall,
            kvm_setup: self.kvm_setup,
            load: self.load,
            in_kvm_run: self.in_kvm_run,
            other_in_main: self.other_in_main,
            process_teardown: self.process_teardown,
            vmm_share: self.vmm_share,
            max_rss_mib: self.rss_mib,
            exits: self.exits,
            pio_exits: self.pio_exits,
            floor: &self.floor,
            floor_long_mode: self.floor_long.as_ref(),
            spawn_true: self.spawn_true,
            vmm_share_over_floor: (self.ratio() * 1e4).round() / 1e4,
            share_target: SHARE_TARGET,
            rss_target_mib: RSS_TARGET_MIB,
            rss_ok: self.rss_ok(),
        }
    }
}

/// target/bench/boot.json.
#[derive(Serialize)]
struct ReportJson<'a> {
    runs: usize,
    mem_mib: u64,
    host_cpu: &'a str,
    kvm: &'static str,
    unit: &'static str,
    wall: Stat,
    kvm_setup: Stat,
    load: Stat,
    in_kvm_run: Stat,
    other_in_main: Stat,
    process_teardown: Stat,
    vmm_share: Stat,
    max_rss_mib: Stat,
    exits: Stat,
    pio_exits: Stat,
    floor: &'a Floor,
    floor_long_mode: Option<&'a Floor>,
    spawn_true: Stat,
    vmm_share_over_floor: f64,
    share_target: f64,
    rss_target_mib: f64,
    rss_ok: bool,
}
