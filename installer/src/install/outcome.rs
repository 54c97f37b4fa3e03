//! What a node command prints: lines for people, one JSON document for programs.

use std::io::Write;

use serde_json::Value;

use super::args::Format;

/// A command's result: its exit status, its text report and its JSON report.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub code: u8,
    pub lines: Vec<String>,
    pub json: Value,
}

impl Outcome {
    /// Prints the report in `format`.
    pub fn print(&self, format: Format, out: &mut dyn Write) -> std::io::Result<()> {
        match format {
            Format::Text => {
                for line in &self.lines {
                    writeln!(out, "{line}")?;
                }
            }
            Format::Json => {
                let text =
                    serde_json::to_string_pretty(&self.json).map_err(std::io::Error::other)?;
                writeln!(out, "{text}")?;
            }
        }
        Ok(())
    }
}
