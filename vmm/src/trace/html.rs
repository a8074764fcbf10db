//! `vmm trace --html OUT.html`: a recording (trace/record.rs) drawn as one
//! self-contained page — no network, the recording embedded as JSON, the
//! script and style inline (trace.html). A lane per privilege level shows
//! each `syscall`/`sysretq` as a step down and up; the instruction list is
//! virtualised (only visible rows are in the DOM, so 100,000 steps stay
//! usable); clicking a step shows its registers with the ones the previous
//! instruction changed highlighted, RSP before and after, the segment and
//! table registers (GDT, TR) and the memory the instruction wrote.

use crate::debug::replay::Replay;
use crate::trace::record::REG_NAMES;
use std::io::Write;

const TEMPLATE: &str = include_str!("trace.html");

/// `s` safe inside HTML text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The page for `rep`.
pub fn render(rep: &Replay) -> String {
    let data = serde_json::json!({
        "header": rep.header,
        "steps": rep.steps,
        "reg_names": REG_NAMES,
        "end": rep.end,
    });
    // Inside <script>, "</" would end the element: JSON allows "<\/".
    let json = data.to_string().replace("</", "<\\/");
    TEMPLATE
        .replacen("TITLE", &escape(&rep.header.from), 1)
        .replacen("DATA", &json, 1)
}

/// Write the page for `rep` to `out`.
pub fn write(rep: &Replay, out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(render(rep).as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_embeds_every_step() {
        let rec = [
            r#"{"format":"vmm-trace","version":1,"from":"x</script>","from_addr":"0x0","pvm":true}"#,
            r#"{"step":0,"cpu":0,"cpl":0,"rip":"0x10","sym":"0x10 <a>","insn":"nop","regs":{"rip":"0x10"}}"#,
            r#"{"step":1,"cpu":0,"cpl":3,"rip":"0x11","sym":"0x11 </script>","insn":"nop","regs":{"rip":"0x11"},"transition":{"from":0,"to":3,"via":"sysretq"}}"#,
        ]
        .join("\n");
        let rep = Replay::parse("t", std::io::Cursor::new(rec)).unwrap();
        let page = render(&rep);
        assert!(!page.contains("http://") && !page.contains("https://"), "no network");
        assert!(!page.contains("src="), "no external scripts or images");
        assert_eq!(
            page.matches("</script>").count(),
            2,
            "the data cannot close its element"
        );
        let start = page.find(r#"id="data">"#).unwrap() + r#"id="data">"#.len();
        let end = start + page[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(v["steps"].as_array().unwrap().len(), 2);
        assert_eq!(v["steps"][1]["transition"]["via"], "sysretq");
    }
}
