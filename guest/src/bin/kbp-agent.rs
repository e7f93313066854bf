//! The guest's control agent: the host connects over TCP, sends one shell command line,
//! and reads back its output followed by a trailer line `KBP-EXIT <code>`. The command
//! `poweroff` ends the agent (init then powers the guest off).
//!
//! `kbp-agent [ADDR:PORT]` (default 0.0.0.0:7000)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "0.0.0.0:7000".into());
    let listener = TcpListener::bind(&addr)?;
    println!("KBP-AGENT-READY {addr}");
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let command = line.trim();
        if command == "poweroff" {
            writeln!(stream, "KBP-EXIT 0")?;
            return Ok(());
        }
        let (output, code) = match Command::new("/bin/sh").arg("-c").arg(command).output() {
            Ok(out) => {
                let mut text = out.stdout;
                text.extend_from_slice(&out.stderr);
                (text, out.status.code().unwrap_or(-1))
            }
            Err(e) => (format!("kbp-agent: {e}\n").into_bytes(), 127),
        };
        stream.write_all(&output)?;
        writeln!(stream, "\nKBP-EXIT {code}")?;
    }
    Ok(())
}
