//! Reading scenario files into steps.
//!
//! A file is a sequence of blocks separated by empty lines; a block is an optional run
//! of `# comment` lines, a `> command` line and its payload (see the conformance
//! README). The last comment before a command names the step in reports.

use std::fmt;

/// One command of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `> put ACCOUNT NAME` + iCalendar.
    Put {
        /// Calendar user address of the account.
        account: String,
        /// Object name in the account's calendar.
        name: String,
    },
    /// `> get ACCOUNT NAME` + iCalendar to compare.
    Get {
        /// Calendar user address of the account.
        account: String,
        /// Object name in the account's calendar.
        name: String,
    },
    /// `> delete ACCOUNT NAME`.
    Delete {
        /// Calendar user address of the account.
        account: String,
        /// Object name in the account's calendar.
        name: String,
    },
    /// `> expect` + messages or an error name.
    Expect,
    /// `> send` + optional answers.
    Send,
    /// `> itip FROM TO...` + iCalendar.
    Itip {
        /// The sender.
        from: String,
        /// The recipients.
        to: Vec<String>,
    },
    /// `> reset`.
    Reset,
}

/// A command with its payload and where it came from.
#[derive(Debug, Clone)]
pub struct Step {
    /// What to do.
    pub command: Command,
    /// The payload lines, joined with `\n`.
    pub payload: String,
    /// The last comment before the command.
    pub title: String,
    /// 1-based line number of the command.
    pub line: usize,
}

/// A scenario file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ScriptError {}

/// Parses a scenario file.
pub fn parse(text: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps = Vec::new();
    let mut title = String::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((index, raw)) = lines.next() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            title = comment.trim().to_string();
            continue;
        }
        let Some(command_line) = line.strip_prefix('>') else {
            return Err(ScriptError {
                line: index + 1,
                message: format!("expected '# comment' or '> command', found {line:?}"),
            });
        };
        let mut payload = Vec::new();
        while let Some((_, next)) = lines.peek() {
            let next = next.trim_end_matches('\r');
            if next.trim().is_empty() {
                break;
            }
            payload.push(next.to_string());
            lines.next();
        }
        let command = parse_command(command_line.trim()).map_err(|message| ScriptError {
            line: index + 1,
            message,
        })?;
        steps.push(Step {
            command,
            payload: payload.join("\n"),
            title: title.clone(),
            line: index + 1,
        });
    }
    Ok(steps)
}

fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let account_and_name = |words: &[&str]| -> Result<(String, String), String> {
        match words {
            [account, name] => Ok((account.to_string(), name.to_string())),
            _ => Err(format!("{line:?} needs ACCOUNT NAME")),
        }
    };
    match words.split_first() {
        Some((&"put", rest)) => {
            let (account, name) = account_and_name(rest)?;
            Ok(Command::Put { account, name })
        }
        Some((&"get", rest)) => {
            let (account, name) = account_and_name(rest)?;
            Ok(Command::Get { account, name })
        }
        Some((&"delete", rest)) => {
            let (account, name) = account_and_name(rest)?;
            Ok(Command::Delete { account, name })
        }
        Some((&"expect", [])) => Ok(Command::Expect),
        Some((&"send", [])) => Ok(Command::Send),
        Some((&"reset", [])) => Ok(Command::Reset),
        Some((&"itip", [from, to @ ..])) if !to.is_empty() => Ok(Command::Itip {
            from: from.to_string(),
            to: to.iter().map(|s| s.to_string()).collect(),
        }),
        _ => Err(format!("unknown or malformed command {line:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blocks_titles_and_payloads() {
        let text = "# File title\n\n# Step one\n> put a@x.com ev1\nBEGIN:VCALENDAR\nEND:VCALENDAR\n\n> expect\nNothingToSend\n\n> send\n\n> reset\n";
        let steps = parse(text).expect("valid script");
        assert_eq!(steps.len(), 4);
        assert_eq!(steps[0].title, "Step one");
        assert_eq!(steps[0].payload, "BEGIN:VCALENDAR\nEND:VCALENDAR");
        assert_eq!(steps[1].command, Command::Expect);
        assert_eq!(steps[1].payload, "NothingToSend");
        assert_eq!(steps[2].payload, "");
        assert_eq!(steps[3].line, 13);
    }

    #[test]
    fn refuses_unknown_commands_with_the_line() {
        let err = parse("> frobnicate\n").expect_err("unknown command");
        assert_eq!(err.line, 1);
        assert!(parse("plain text\n").is_err());
        assert!(parse("> put onlyaccount\n").is_err());
    }
}
