//! The HTML page for a directory without `index.html`, written entry by entry so that a
//! directory of any size starts arriving at once and never sits whole in memory.

use std::fmt::Write as _;

use cairn_node::merkle::Cid;

use crate::path::encode_segment;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Sizes as people read them: `0 B`, `999 B`, `1.5 KiB`, `12 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// An HTML page's start, to the open `<body>`: `title` (escaped already) and the common
/// styles with `css` after them.
fn page_start(title: &str, css: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}}\n\
         h1{{font-size:1.3em;word-break:break-all}}\n{css}</style>\n</head>\n<body>\n"
    )
}

/// The page's start: title, styles, heading and the table head. `display_path` is the
/// directory's path as shown (decoded); `parent` adds a `..` row.
pub fn head(display_path: &str, dir_cid: &str, parent: bool, signed: Option<&str>) -> String {
    let title = escape(display_path);
    let mut out = page_start(
        &title,
        "table{border-collapse:collapse;width:100%}\n\
         th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e4e4e4}\n\
         td.size{text-align:right;white-space:nowrap}\n\
         td.cid{font-family:monospace;font-size:.85em;color:#666;word-break:break-all}\n",
    );
    let _ = write!(
        out,
        "<h1>Index of {title}</h1>\n<p class=\"root\">Directory <code>{dir_cid}</code></p>\n\
         {signed}<table>\n<thead><tr><th>Name</th><th>Size</th><th>CID</th></tr></thead>\n<tbody>\n",
        signed = signed.map_or_else(String::new, |s| format!("<p class=\"signed\">{}</p>\n", escape(s)))
    );
    if parent {
        out.push_str("<tr><td><a href=\"../\">..</a></td><td class=\"size\"></td><td class=\"cid\"></td></tr>\n");
    }
    out
}

/// One entry's row. `size` is the link's cumulative size; `cid_href` links the CID column
/// (absent on a subdomain gateway, whose paths cannot name another root).
pub fn row(out: &mut String, name: &str, size: u64, cid: &str, cid_href: Option<&str>) {
    // Always `./name`: a name such as `javascript:alert(1)` would otherwise read as a URL
    // with a scheme of its own.
    let href = escape(&format!("./{}", encode_segment(name)));
    let name = escape(name);
    let size = human_size(size);
    let _ = write!(out, "<tr><td><a href=\"{href}\">{name}</a></td><td class=\"size\">{size}</td><td class=\"cid\">");
    match cid_href {
        Some(link) => {
            let _ = write!(out, "<a href=\"{}\">{cid}</a>", escape(link));
        }
        None => out.push_str(cid),
    }
    out.push_str("</td></tr>\n");
}

/// The page's end, with the number of entries.
pub fn foot(entries: u64) -> String {
    format!("</tbody>\n</table>\n<p class=\"count\">{entries} entries</p>\n</body>\n</html>\n")
}

/// A page about one DAG-JSON or DAG-CBOR block (`codec` names which) at `display_path`:
/// its CID and size, links to it as it is and as a raw block or CAR, the CIDs it links to,
/// and a DAG-JSON document itself. Everything from the block is escaped.
pub fn block_page(display_path: &str, cid: &Cid, codec: &str, data: &[u8]) -> String {
    let title = escape(display_path);
    let mut out = page_start(&title, "code,pre{font-size:.9em;word-break:break-all;white-space:pre-wrap}\n");
    let _ = write!(
        out,
        "<h1>{title}</h1>\n<p>A {codec} block, <code>{cid}</code>, of {size}.</p>\n\
         <p>Download it as <a href=\"?format={codec}&amp;download=true\">{codec}</a>, \
         as a <a href=\"?format=raw\">raw block</a> or as a <a href=\"?format=car\">CAR</a>.</p>\n",
        size = human_size(data.len() as u64),
    );
    match cairn_node::merkle::links::links(cid, &bytes::Bytes::copy_from_slice(data)) {
        Ok(links) if links.is_empty() => out.push_str("<p>It links to no other block.</p>\n"),
        Ok(links) => {
            let _ = writeln!(out, "<p>It links to {} blocks:</p>\n<ul>", links.len());
            for link in links {
                let _ = writeln!(out, "<li><code>{link}</code></li>");
            }
            out.push_str("</ul>\n");
        }
        Err(e) => {
            let _ = writeln!(out, "<p>Its links cannot be read: {}</p>", escape(&e.to_string()));
        }
    }
    if codec == "dag-json" {
        let _ = writeln!(out, "<pre>{}</pre>", escape(&String::from_utf8_lossy(data)));
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_encoded() {
        let mut out = String::new();
        row(&mut out, "<b>\"x\" & y.txt", 1536, "bafyfoo", Some("/ipfs/bafyfoo?filename=a&b"));
        assert!(out.contains("href=\"./%3Cb%3E%22x%22%20&amp;%20y.txt\""), "{out}");
        assert!(out.contains(">&lt;b&gt;&quot;x&quot; &amp; y.txt</a>"), "{out}");
        assert!(out.contains("1.5 KiB"), "{out}");
        assert!(out.contains("href=\"/ipfs/bafyfoo?filename=a&amp;b\""), "{out}");
        assert!(!out.contains("<b>"));
    }

    #[test]
    fn names_that_look_like_urls_stay_relative_links() {
        for name in ["javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,x", "//evil.example", "http://e.x"] {
            let mut out = String::new();
            row(&mut out, name, 1, "bafyfoo", None);
            let href = out.split("href=\"").nth(1).unwrap().split('"').next().unwrap();
            assert!(href.starts_with("./") && !href[2..].starts_with('/'), "{name}: {href}");
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}
