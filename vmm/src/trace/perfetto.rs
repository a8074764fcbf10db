//! `--perfetto OUT.json`: the function graph and the strace stream as Chrome
//! trace-event JSON (the "JSON Object Format": `{"traceEvents": [...]}`),
//! which ui.perfetto.dev and `chrome://tracing` open. Funcgraph writes a
//! `B`/`E` pair per call (nesting is the call tree); strace writes one `X`
//! (complete) event per system call, with its duration. Timestamps are
//! microseconds since the trace began, as the format requires; `pid` is the
//! guest process (0 for the kernel's function graph), `tid` the vCPU.
//! Durations include the single-stepping and VM exits that observe them.

use serde::Serialize;
use std::io::Write;
use std::time::Instant;

/// One trace event, with the fields the trace-event format defines.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub cat: &'static str,
    /// Phase: `B`egin, `E`nd, `X` (complete, with `dur`), `M`etadata.
    pub ph: &'static str,
    /// Microseconds since the trace began.
    pub ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    pub pid: u64,
    pub tid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File<'a> {
    trace_events: &'a [Event],
    display_time_unit: &'static str,
}

/// Events gathered during a run, written at its end.
pub struct Perfetto {
    start: Instant,
    events: Vec<Event>,
    out: Box<dyn Write + Send>,
    cat: &'static str,
}

impl Perfetto {
    /// A trace of category `cat` ("funcgraph", "strace") to write to `out`.
    pub fn new(cat: &'static str, out: Box<dyn Write + Send>) -> Perfetto {
        Perfetto {
            start: Instant::now(),
            events: Vec::new(),
            out,
            cat,
        }
    }

    /// Microseconds from the start of the trace to `t`.
    pub fn us(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.start).as_secs_f64() * 1e6
    }

    fn push(&mut self, name: &str, ph: &'static str, ts: f64, dur: Option<f64>, pid: u64, tid: u64) {
        self.events.push(Event {
            name: name.to_string(),
            cat: self.cat,
            ph,
            ts,
            dur,
            pid,
            tid,
            args: None,
        });
    }

    /// A function (or span) began now.
    pub fn begin(&mut self, name: &str, pid: u64, tid: u64) {
        let ts = self.us(Instant::now());
        self.push(name, "B", ts, None, pid, tid);
    }

    /// The innermost open span on (pid, tid) ended now.
    pub fn end(&mut self, name: &str, pid: u64, tid: u64) {
        let ts = self.us(Instant::now());
        self.push(name, "E", ts, None, pid, tid);
    }

    /// A span from `start` to now, with `args` shown when it is selected.
    pub fn complete(&mut self, name: &str, start: Instant, pid: u64, tid: u64, args: serde_json::Value) {
        let ts = self.us(start);
        let dur = (self.us(Instant::now()) - ts).max(0.0);
        self.push(name, "X", ts, Some(dur), pid, tid);
        if let Some(e) = self.events.last_mut() {
            e.args = Some(args);
        }
    }

    /// Name a process or thread in the viewer (a metadata event).
    pub fn name(&mut self, what: &'static str, name: &str, pid: u64, tid: u64) {
        self.events.push(Event {
            name: what.to_string(),
            cat: "__metadata",
            ph: "M",
            ts: 0.0,
            dur: None,
            pid,
            tid,
            args: Some(serde_json::json!({ "name": name })),
        });
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Write the file: one JSON object, the events in the order they happened.
    pub fn finish(&mut self) -> std::io::Result<usize> {
        let file = File {
            trace_events: &self.events,
            display_time_unit: "ns",
        };
        serde_json::to_writer(&mut self.out, &file)?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(self.events.len())
    }
}

/// Write `p` and say so (or why not) in a closing line.
pub fn written(p: &mut Perfetto) -> String {
    match p.finish() {
        Ok(n) => format!("vmm: perfetto: {n} trace events written"),
        Err(e) => format!("vmm: perfetto: cannot write the trace events: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_end_and_complete_events_have_the_format_fields() {
        let mut p = Perfetto::new("funcgraph", Box::new(std::io::sink()));
        p.name("process_name", "kernel", 0, 0);
        p.begin("f", 0, 0);
        p.end("f", 0, 0);
        p.complete("write", Instant::now(), 1, 1, serde_json::json!({"ret": 3}));
        let phases: Vec<_> = p.events().iter().map(|e| e.ph).collect();
        assert_eq!(phases, ["M", "B", "E", "X"]);
        let v: serde_json::Value = serde_json::to_value(&p.events()[3]).unwrap();
        for f in ["name", "cat", "ph", "ts", "dur", "pid", "tid", "args"] {
            assert!(v.get(f).is_some(), "{f} missing in {v}");
        }
        assert!(p.events()[1].ts <= p.events()[2].ts);
        assert!(serde_json::to_value(&p.events()[1]).unwrap().get("dur").is_none());
    }
}
