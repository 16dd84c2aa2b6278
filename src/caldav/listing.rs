//! The (href, ETag) pairs of a WebDAV multistatus answer (PROPFIND, REPORT), read
//! without a full XML parser: the front only needs to know which ETag Radicale gave
//! which object, and passes the body on untouched.

/// Each `<response>` of `xml` that names one href and a `getetag`, as (href as written,
/// still percent-encoded; ETag). Namespace prefixes are ignored; anything unreadable is
/// skipped.
pub fn etags(xml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some((block, after)) = element(rest, "response") {
        rest = after;
        let href = element(block, "href").map(|(t, _)| unescape(t.trim()));
        let etag = element(block, "getetag").map(|(t, _)| unescape(t.trim()));
        if let (Some(href), Some(etag)) = (href, etag) {
            if !etag.is_empty() {
                out.push((href, etag));
            }
        }
    }
    out
}

/// The content of the first element with local name `name`, and what follows it.
fn element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    loop {
        let open = from + xml[from..].find('<')?;
        let tag_end = open + xml[open..].find('>')?;
        let tag = &xml[open + 1..tag_end];
        from = tag_end + 1;
        if tag.starts_with('/') || tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        let qname = tag.split(|c: char| c.is_whitespace() || c == '/').next()?;
        if local(qname) != name {
            continue;
        }
        if tag.ends_with('/') {
            return Some(("", &xml[from..]));
        }
        // The matching close tag: same qualified name.
        let close = format!("</{qname}>");
        let end = from + xml[from..].find(&close)?;
        return Some((&xml[from..end], &xml[end + close.len()..]));
    }
}

fn local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_radicale_sync_answer_gives_its_etags() {
        // As Radicale 3.9 answers a sync-collection REPORT (abridged).
        let xml = r#"<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:"><response><href>/alice/5d0c/ev%201.ics</href><propstat><prop>
<getetag>"e1aa"</getetag></prop><status>HTTP/1.1 200 OK</status></propstat></response>
<response><href>/alice/5d0c/gone.ics</href><status>HTTP/1.1 404 Not Found</status></response>
<response><href>/alice/5d0c/b.ics</href><propstat><prop><getetag>&quot;e2bb&quot;</getetag>
</prop></propstat></response><sync-token>http://radicale.org/ns/sync/abc</sync-token></multistatus>"#;
        assert_eq!(
            etags(xml),
            [
                ("/alice/5d0c/ev%201.ics".to_string(), "\"e1aa\"".to_string()),
                ("/alice/5d0c/b.ics".to_string(), "\"e2bb\"".to_string()),
            ]
        );
    }

    #[test]
    fn prefixes_and_empty_answers_are_read_too() {
        let xml = r#"<D:multistatus xmlns:D="DAV:"><D:response><D:href>/a/c/x.ics</D:href>
<D:propstat><D:prop><D:getetag>"x"</D:getetag><D:getcontenttype/></D:prop></D:propstat>
</D:response></D:multistatus>"#;
        assert_eq!(
            etags(xml),
            [("/a/c/x.ics".to_string(), "\"x\"".to_string())]
        );
        assert!(etags("").is_empty());
        assert!(etags("<multistatus><response><href>/a</href>").is_empty());
    }
}
