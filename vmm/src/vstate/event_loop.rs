//! The VMM thread: one event loop beside the vCPU thread(s).
//!
//! ```text
//!   vCPU thread (one per vCPU)          VMM thread ("event-loop")
//!   ─────────────────────────           ─────────────────────────────────────
//!   loop {                              event-manager's EventManager (epoll):
//!     stop requested? -> return           fd 0 (stdin)  -> Input queue, IRQ 4
//!     KVM_RUN  <──── signal + ────────    TimerFd       -> --timeout: stop
//!     handle the exit   immediate_exit    EventFd (signals) -> SIGINT/SIGTERM
//!   }                                     EventFd (room)    -> read stdin again
//!   drains Input into the UART FIFO,      EventFd (control) -> exit, watch gdb
//!   rings "room"; arms the TimerFd        gdb socket (edge) -> gdb's Ctrl-C
//! ```
//!
//! Whatever must stop the guest — the timeout, Ctrl-C, SIGTERM, gdb's
//! interrupt — becomes a [`Stop`] request in the [`Kicker`] (kick.rs), which
//! kicks every registered vCPU out of KVM_RUN.
//!
//! Costs at start-up: one thread, an epoll fd, three eventfds, a timerfd
//! (about a dozen system calls); `vmm run` had two threads before (stdin
//! reader and watchdog).

use crate::devices::serial::Input;
use crate::devices::tty::{self, LineDiscipline};
use crate::seccomp::{LoopFilter, SeccompError};
use crate::vstate::kick::{self, InterruptPolicy, Kicker, Stop};
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vmm_sys_util::signal;
use vmm_sys_util::timerfd::TimerFd;

/// Why the event loop could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopError {
    #[error("cannot create the VMM thread's {what}: {source}")]
    Fd { what: &'static str, source: std::io::Error },
    #[error("cannot set up the VMM thread's event loop: {0:?}")]
    Manager(event_manager::Error),
    #[error("cannot start the VMM thread: {0}")]
    Spawn(std::io::Error),
    #[error("cannot install the handler of signal {signal}: {source}")]
    Signal { signal: i32, source: std::io::Error },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

type Result<T> = std::result::Result<T, EventLoopError>;

/// The signal handler's way into the loop: the eventfd of the loop that
/// catches signals, and the last signal.
static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    let fd = SIGNAL_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let one = 1u64;
        // SAFETY: write(2) is async-signal-safe; 8 bytes from a local.
        unsafe { libc::write(fd, std::ptr::from_ref(&one).cast(), 8) };
    }
}

/// What the vCPU side asks of the VMM thread.
enum Ctl {
    Exit,
    /// Stop the guest when this socket becomes readable while a vCPU runs:
    /// gdb's Ctrl-C (a 0x03 byte) while the guest runs.
    InterruptOnInput(RawFd),
}

/// How the VMM thread is started.
pub struct LoopConfig {
    /// Feed host stdin into this queue (None: the guest's input has ended).
    pub stdin: Option<(Arc<Input>, Arc<EventFd>)>,
    /// The VM fd, for the seccomp filter's KVM_SIGNAL_MSI rule.
    pub vm_fd: RawFd,
    /// Where the loop's stop requests go: the VM's kicker, which every
    /// vCPU thread registers with.
    pub kicker: Arc<Kicker>,
    /// Install the VMM thread's seccomp filter.
    pub seccomp: bool,
}

/// The VMM thread and what the vCPU side holds of it.
pub struct EventLoop {
    kicker: Arc<Kicker>,
    timer: Arc<Mutex<TimerFd>>,
    armed: bool,
    signal_fd: RawFd,
    control: Arc<EventFd>,
    queue: Arc<Mutex<VecDeque<Ctl>>>,
    thread: Option<std::thread::JoinHandle<EventManager<Subscriber>>>,
}

type Subscriber = Box<dyn MutEventSubscriber + Send>;

fn fd<T>(what: &'static str, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| EventLoopError::Fd { what, source })
}

impl EventLoop {
    /// Create the loop's fds and start the VMM thread.
    pub fn start(cfg: LoopConfig) -> Result<EventLoop> {
        kick::install_handler().map_err(|source| EventLoopError::Signal {
            signal: kick::kick_signal(),
            source,
        })?;
        let kicker = cfg.kicker;
        let timer = fd("timerfd", TimerFd::new().map_err(std::io::Error::from))?;
        // Non-blocking: the vCPU thread may disarm it between the epoll
        // wake-up and the read, which would then wait for ever.
        set_nonblocking(timer.as_raw_fd())?;
        let timer_raw = timer.as_raw_fd();
        let timer = Arc::new(Mutex::new(timer));
        let signals = fd("signal eventfd", EventFd::new(EFD_NONBLOCK))?;
        let control = Arc::new(fd("control eventfd", EventFd::new(EFD_NONBLOCK))?);
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let mut mgr: EventManager<Subscriber> = EventManager::new().map_err(EventLoopError::Manager)?;

        let mut reads = vec![timer_raw, signals.as_raw_fd(), control.as_raw_fd()];
        let mut echo = false;
        if let Some((input, room)) = cfg.stdin {
            // A terminal: raw mode, and vmm is its line discipline (tty.rs).
            let discipline = if std::io::IsTerminal::is_terminal(&std::io::stdin()) && tty::in_foreground() {
                match tty::enter_raw_mode() {
                    Ok(keys) => Some(LineDiscipline::new(keys)),
                    Err(e) => {
                        eprintln!("vmm: cannot put the terminal in raw mode ({e}); Ctrl-C kills vmm");
                        None
                    }
                }
            } else {
                None
            };
            echo = discipline.is_some();
            reads.extend([0, room.as_raw_fd()]);
            mgr.add_subscriber(Box::new(StdinFeed {
                input,
                room,
                kicker: kicker.clone(),
                discipline,
                polled: true,
                watching: false,
            }));
        }
        let signal_fd = signals.as_raw_fd();
        mgr.add_subscriber(Box::new(Timeout {
            timer: timer.clone(),
            kicker: kicker.clone(),
        }));
        mgr.add_subscriber(Box::new(Signals {
            fd: signals,
            kicker: kicker.clone(),
        }));
        let done = Arc::new(AtomicBool::new(false));
        mgr.add_subscriber(Box::new(Control {
            fd: control.clone(),
            queue: queue.clone(),
            done: done.clone(),
            kicker: kicker.clone(),
            watched: None,
        }));
        let filter = if cfg.seccomp {
            Some(LoopFilter::compile(&reads, cfg.vm_fd, echo)?)
        } else {
            None
        };
        let thread = std::thread::Builder::new()
            .name("event-loop".into())
            .spawn(move || run(mgr, done, filter))
            .map_err(EventLoopError::Spawn)?;
        Ok(EventLoop {
            kicker,
            timer,
            armed: false,
            signal_fd,
            control,
            queue,
            thread: Some(thread),
        })
    }

    pub fn kicker(&self) -> &Arc<Kicker> {
        &self.kicker
    }

    /// Catch SIGINT (and, with [`InterruptPolicy::Stop`], SIGTERM): the
    /// handler wakes this loop, which stops the guest as `policy` says.
    pub fn catch_signals(&self, policy: InterruptPolicy) -> Result<()> {
        self.kicker.set_policy(policy);
        SIGNAL_FD.store(self.signal_fd, Ordering::SeqCst);
        let mut sigs = vec![libc::SIGINT];
        if policy == InterruptPolicy::Stop {
            sigs.push(libc::SIGTERM);
        }
        for s in sigs {
            signal::register_signal_handler(s, on_signal).map_err(|e| EventLoopError::Signal {
                signal: s,
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// Start the `--timeout` clock for one run (None: no limit). A timeout
    /// left pending by an earlier run is dropped.
    pub fn arm_timeout(&mut self, after: Option<Duration>) {
        self.kicker.clear(Stop::Timeout);
        if let Some(t) = after {
            // TimerFd takes zero as "disarm": the shortest timeout is 1 ns.
            let _ = self.timer.lock().unwrap().reset(t.max(Duration::from_nanos(1)), None);
            self.armed = true;
        }
    }

    /// Stop the `--timeout` clock (the run ended).
    pub fn disarm_timeout(&mut self) {
        if std::mem::take(&mut self.armed) {
            let _ = self.timer.lock().unwrap().clear();
        }
    }

    /// While a vCPU runs, readable data on `fd` stops the guest with
    /// [`Stop::Interrupt`] (gdb's Ctrl-C). Edge-triggered: the VMM thread
    /// never reads the socket, the debugger does.
    pub fn interrupt_on_input(&self, fd: RawFd) {
        self.send(Ctl::InterruptOnInput(fd));
    }

    /// For a process about to exit, as soon as the run is over: give the
    /// terminal back and tell the VMM thread to end, without waiting for it.
    /// Waiting (a join) costs a scheduling round trip, 0.2 ms and up to 4 ms
    /// on a loaded host (measured), and so does a thread still alive at
    /// exit_group, which must run to die before the parent's wait returns:
    /// told early, it is gone while vmm prints its report. The kernel closes
    /// the loop's fds at exit. (The join handle is leaked, so the thread
    /// never drops its manager: its filter allows no close.)
    pub fn abandon(mut self) {
        tty::restore();
        self.send(Ctl::Exit);
        std::mem::forget(self.thread.take());
    }

    fn send(&self, c: Ctl) {
        self.queue.lock().unwrap().push_back(c);
        let _ = self.control.write(1);
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        let _ = SIGNAL_FD.compare_exchange(self.signal_fd, -1, Ordering::SeqCst, Ordering::SeqCst);
        // Not after `abandon`, which told the thread already.
        if let Some(t) = self.thread.take() {
            self.send(Ctl::Exit);
            let _ = t.join();
        }
        // The VMM thread restored the terminal as it ended; if it could not
        // (it panicked), do it here.
        tty::restore();
    }
}

fn set_nonblocking(fd: RawFd) -> Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        fd_err("timerfd", std::io::Error::last_os_error())
    }
}

fn fd_err<T>(what: &'static str, source: std::io::Error) -> Result<T> {
    Err(EventLoopError::Fd { what, source })
}

/// The VMM thread. It hands the manager back as it ends: its fds are
/// closed by the thread that joins (the VMM thread's filter allows no close).
fn run(
    mut mgr: EventManager<Subscriber>,
    done: Arc<AtomicBool>,
    filter: Option<LoopFilter>,
) -> EventManager<Subscriber> {
    // SIGINT and SIGTERM are for the vCPU threads' handler to take: the
    // loop learns of them through the signal eventfd, and its epoll_wait is
    // not cut short for nothing.
    let _ = signal::block_signal(libc::SIGINT);
    let _ = signal::block_signal(libc::SIGTERM);
    if let Some(f) = filter {
        if let Err(e) = f.apply() {
            eprintln!("vmm: {e}\nvmm: guest serial input, --timeout and Ctrl-C are off");
            tty::restore();
            return mgr;
        }
    }
    while !done.load(Ordering::SeqCst) {
        if let Err(e) = mgr.run() {
            eprintln!("vmm: the VMM thread's event loop failed: {e:?}");
            break;
        }
    }
    tty::restore();
    mgr
}

/// Host stdin into the guest's input queue.
struct StdinFeed {
    input: Arc<Input>,
    /// Rung by the vCPU thread when the guest made room (serial.rs).
    room: Arc<EventFd>,
    kicker: Arc<Kicker>,
    /// At a terminal: vmm's line discipline (tty.rs).
    discipline: Option<LineDiscipline>,
    /// Stdin can be polled (a pipe, terminal, socket). epoll refuses regular
    /// files and /dev/null, which are always readable: those are read as
    /// the guest makes room, without epoll.
    polled: bool,
    /// Fd 0 is in the epoll set.
    watching: bool,
}

impl StdinFeed {
    /// Read what there is room for. Polled: one read (epoll said it would
    /// not block); not polled: until the queue is full or the file ends.
    fn read(&mut self, ops: &mut EventOps<'_>) {
        let mut buf = [0u8; 4096];
        loop {
            let space = self.input.space();
            if space == 0 {
                if self.input.wait_for_room() {
                    self.unwatch(ops);
                    return;
                }
                continue;
            }
            let want = buf.len().min(space);
            // SAFETY: reading into a local buffer of at least `want` bytes.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), want) };
            match n {
                0 => return self.end(ops),
                n if n > 0 => self.take(&buf[..n as usize], ops),
                _ => match std::io::Error::last_os_error().kind() {
                    std::io::ErrorKind::Interrupted => continue,
                    std::io::ErrorKind::WouldBlock => return,
                    // A closed or unreadable stdin ends the input like EOF.
                    _ => return self.end(ops),
                },
            }
            if self.polled || self.input.has_ended() {
                return;
            }
        }
    }

    fn take(&mut self, bytes: &[u8], ops: &mut EventOps<'_>) {
        let Some(ld) = self.discipline.as_mut() else {
            return self.input.push(bytes);
        };
        let fx = ld.keys(bytes);
        if !fx.echo.is_empty() {
            // The echo goes to the terminal itself (fd 0, as n_tty's does),
            // not to stdout, which may be a file.
            // SAFETY: writing a slice we own.
            unsafe { libc::write(0, fx.echo.as_ptr().cast(), fx.echo.len()) };
        }
        self.input.push(&fx.send);
        if fx.interrupt {
            self.kicker.on_interrupt(libc::SIGINT);
        }
        if fx.eof {
            self.end(ops);
        }
    }

    fn end(&mut self, ops: &mut EventOps<'_>) {
        self.unwatch(ops);
        self.input.end();
        // At a terminal: the input is over, so vmm stops reading keys, and
        // the terminal gets its own settings back at once — Ctrl-C is then
        // SIGINT again (caught: the guest stops as before), not a byte
        // nobody reads.
        if self.discipline.take().is_some() {
            tty::restore();
        }
    }

    fn watch(&mut self, ops: &mut EventOps<'_>) {
        if self.polled && !self.watching && !self.input.has_ended() {
            match ops.add(Events::new_raw(0, EventSet::IN)) {
                Ok(()) => self.watching = true,
                // EPERM: a regular file or /dev/null. Read it as the guest
                // makes room instead.
                Err(_) => {
                    self.polled = false;
                    self.read(ops);
                }
            }
        }
    }

    fn unwatch(&mut self, ops: &mut EventOps<'_>) {
        if std::mem::take(&mut self.watching) {
            let _ = ops.remove(Events::new_raw(0, EventSet::IN));
        }
    }
}

impl MutEventSubscriber for StdinFeed {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        let _ = ops.add(Events::new(&*self.room, EventSet::IN));
        self.watch(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps<'_>) {
        if events.fd() == self.room.as_raw_fd() {
            let _ = self.room.read();
            if self.input.has_ended() {
                return;
            }
            if self.polled {
                self.watch(ops);
            } else {
                self.read(ops);
            }
        } else {
            self.read(ops);
        }
    }
}

/// `--timeout`.
struct Timeout {
    timer: Arc<Mutex<TimerFd>>,
    kicker: Arc<Kicker>,
}

impl MutEventSubscriber for Timeout {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        let _ = ops.add(Events::new(&*self.timer.lock().unwrap(), EventSet::IN));
    }

    fn process(&mut self, _: Events, _: &mut EventOps<'_>) {
        // Nothing to read (EAGAIN): the run ended and disarmed the timer
        // since the wake-up; the expiry is stale.
        if let Ok(n) = self.timer.lock().unwrap().wait() {
            if n > 0 {
                self.kicker.stop(Stop::Timeout);
            }
        }
    }
}

/// SIGINT, SIGTERM (through the handler's eventfd).
struct Signals {
    fd: EventFd,
    kicker: Arc<Kicker>,
}

impl MutEventSubscriber for Signals {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        let _ = ops.add(Events::new(&self.fd, EventSet::IN));
    }

    fn process(&mut self, _: Events, _: &mut EventOps<'_>) {
        let _ = self.fd.read();
        let sig = LAST_SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            self.kicker.on_interrupt(sig);
        }
    }
}

/// Requests from the vCPU side, and the socket it asked to watch.
struct Control {
    fd: Arc<EventFd>,
    queue: Arc<Mutex<VecDeque<Ctl>>>,
    done: Arc<AtomicBool>,
    kicker: Arc<Kicker>,
    watched: Option<RawFd>,
}

impl MutEventSubscriber for Control {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        let _ = ops.add(Events::new(&*self.fd, EventSet::IN));
    }

    fn process(&mut self, events: Events, ops: &mut EventOps<'_>) {
        if Some(events.fd()) == self.watched {
            // Data from gdb while the guest runs can only be its interrupt
            // request; while the guest is stopped gdb talks to the stub.
            if self.kicker.any_running() {
                self.kicker.stop(Stop::Interrupt);
            }
            return;
        }
        let _ = self.fd.read();
        let cmds: Vec<Ctl> = self.queue.lock().unwrap().drain(..).collect();
        for c in cmds {
            match c {
                Ctl::Exit => self.done.store(true, Ordering::SeqCst),
                Ctl::InterruptOnInput(fd) => {
                    if self.watched.is_none()
                        && ops
                            .add(Events::new_raw(fd, EventSet::IN | EventSet::EDGE_TRIGGERED))
                            .is_ok()
                    {
                        self.watched = Some(fd);
                    }
                }
            }
        }
    }
}
