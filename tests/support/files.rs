//! Reading what tests and imipd left in folders and mails: the files of one kind in a
//! folder, the calendar part of an email.

use std::path::{Path, PathBuf};

/// The files in `dir` whose name ends in `.<ext>`, sorted; fails the test when the
/// folder cannot be read.
pub fn with_extension(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// The text of the first `text/calendar` part of `mail`, if it has one.
pub fn calendar_part(mail: &mail_parser::Message) -> Option<String> {
    use mail_parser::MimeHeaders;
    mail.parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "text" && c.subtype() == Some("calendar"))
        })
        .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
}
