//! A website's `_redirects` file (the web redirects file spec): rules, one a line, of the form
//! `from to [status]`, evaluated in order for paths that the site's DAG does not have, on
//! origins that hold one root each (subdomains).
//!
//! `from` is a path whose segments are literals, `:name` placeholders (one segment each) or,
//! last, `*` (the rest of the path, as `:splat`); `to` is a path or an `http(s)` URL, in which
//! placeholders are filled in. The status is 301 by default; 200 rewrites (the `to` path is
//! served in place of the missing one), 404, 410 and 451 serve the `to` path with that status,
//! and 301, 302, 303, 307 and 308 redirect there.
//!
//! The file is at most [`MAX_BYTES`]; a file that is larger or does not parse is an error the
//! gateway reports (500), as the spec says, rather than a set of rules half applied.

/// The largest `_redirects` file read (the spec's 64 KiB).
pub const MAX_BYTES: u64 = 64 << 10;

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    from: Vec<Segment>,
    to: String,
    /// The status the rule answers with.
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Placeholder(String),
    Splat,
}

/// What a matching rule says to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Serve the path `to` (within the same root) with `status` (200, 404, 410 or 451).
    Serve { to: String, status: u16 },
    /// Redirect to `location` with `status`.
    Redirect { location: String, status: u16 },
}

/// Parses a `_redirects` file. An error names the line and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |why: String| format!("_redirects line {}: {why}", n + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (from, to, status) = match fields[..] {
            [from, to] => (from, to, 301),
            [from, to, status] => {
                let code =
                    status.parse::<u16>().ok().filter(|c| matches!(c, 200 | 301..=303 | 307 | 308 | 404 | 410 | 451));
                (from, to, code.ok_or_else(|| at(format!("unsupported status {status:?}")))?)
            }
            _ => return Err(at(format!("expected `from to [status]`, got {} fields", fields.len()))),
        };
        if !from.starts_with('/') {
            return Err(at(format!("`from` must be a path starting with /, not {from:?}")));
        }
        let is_url = to.starts_with("http://") || to.starts_with("https://");
        if !to.starts_with('/') && !is_url {
            return Err(at(format!("`to` must be a path starting with / or an http(s) URL, not {to:?}")));
        }
        if is_url && matches!(status, 200 | 404 | 410 | 451) {
            return Err(at(format!("status {status} serves a path of this site; {to:?} is a URL")));
        }
        let parts: Vec<&str> = from.trim_start_matches('/').split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(at("`*` may only end `from`".into()));
                }
                Segment::Splat
            } else if let Some(name) = part.strip_prefix(':') {
                if segments.iter().any(|s| *s == Segment::Placeholder(name.to_owned())) {
                    return Err(at(format!("placeholder :{name} is used twice in `from`")));
                }
                Segment::Placeholder(name.to_owned())
            } else {
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        rules.push(Rule { from: segments, to: to.to_owned(), status });
    }
    Ok(rules)
}

/// The action of the first rule that matches `path` (the request's URL path on the site's
/// origin, percent-encoded as it came), with the request's `query` (if any) carried to a
/// redirect's location, its parameters winning over the rule's.
///
/// Empty segments are dropped, as the path parser drops them (so `/old//evil.com` is
/// `/old/evil.com`, and a splat can never begin with `/`), and a rule whose filled-in target
/// passes [`MAX_TARGET_BYTES`] is an error rather than a string of any size.
pub fn evaluate(rules: &[Rule], path: &str, query: Option<&str>) -> Option<Result<Action, String>> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    rules.iter().find_map(|rule| {
        let bound = rule.bind(&parts)?;
        let to = match fill(&rule.to, &bound) {
            Some(to) => to,
            None => {
                return Some(Err(format!("a _redirects rule makes a target of more than {MAX_TARGET_BYTES} bytes")))
            }
        };
        Some(Ok(match rule.status {
            200 | 404 | 410 | 451 => Action::Serve { to, status: rule.status },
            status => Action::Redirect { location: with_query(&to, query), status },
        }))
    })
}

/// The longest target a rule may make once its placeholders are filled in.
pub const MAX_TARGET_BYTES: usize = 8 << 10;

/// `to` with each `:name` of `bound` replaced by its value, in one pass (a value is never
/// itself rewritten), the longest name matching first; `None` past [`MAX_TARGET_BYTES`].
fn fill(to: &str, bound: &[(String, String)]) -> Option<String> {
    let mut out = String::with_capacity(to.len());
    let mut rest = to;
    while let Some(at) = rest.find(':') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let hit = bound.iter().filter(|(name, _)| after.starts_with(name.as_str())).max_by_key(|(name, _)| name.len());
        match hit {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push(':');
                rest = after;
            }
        }
        if out.len() > MAX_TARGET_BYTES {
            return None;
        }
    }
    out.push_str(rest);
    (out.len() <= MAX_TARGET_BYTES).then_some(out)
}

impl Rule {
    /// The placeholders' values when `from` matches the path's segments.
    fn bind(&self, parts: &[&str]) -> Option<Vec<(String, String)>> {
        let mut bound = Vec::new();
        for (i, segment) in self.from.iter().enumerate() {
            match segment {
                Segment::Splat => {
                    bound.push(("splat".to_owned(), parts.get(i..).unwrap_or_default().join("/")));
                    return Some(bound);
                }
                Segment::Literal(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::Placeholder(name) => {
                    let value = parts.get(i).filter(|v| !v.is_empty())?;
                    bound.push((name.clone(), (*value).to_owned()));
                }
            }
        }
        (parts.len() == self.from.len()).then_some(bound)
    }
}

/// `to` with the request's query parameters added, replacing any of the same name in `to`.
fn with_query(to: &str, query: Option<&str>) -> String {
    let (to, fragment) = to.split_once('#').map_or((to, None), |(t, f)| (t, Some(f)));
    let mut out = match query.filter(|q| !q.is_empty()) {
        None => to.to_owned(),
        Some(query) => {
            // Pairs are kept as they were written (not decoded and encoded again); the
            // rule's own lose to the request's of the same name.
            let name = |pair: &str| pair.split('=').next().unwrap_or_default().to_owned();
            let ours: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
            let (base, own) = to.split_once('?').map_or((to, ""), |(b, q)| (b, q));
            let kept = own.split('&').filter(|p| !p.is_empty() && !ours.iter().any(|o| name(o) == name(p)));
            let merged: Vec<&str> = kept.chain(ours.iter().copied()).collect();
            format!("{base}?{}", merged.join("&"))
        }
    };
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    // What a header cannot carry (non-ASCII, spaces, controls) goes percent-encoded.
    out.bytes().map(|b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's own example site's rules.
    const EXAMPLES: &str = "/redirect-one /one.html\n\
        /301-redirect-one /one.html 301\n\
        /302-redirect-two /two.html 302\n\
        /200-index /index.html 200\n\
        # a comment\r\n\
        \t/posts/:year/:month/:day/:title /articles/:year/:month/:day/:title 301  \n\
        \n\
        /splat/* /redirected-splat/:splat 301\n\
        /not-found/* /404.html 404\n\
        /gone/* /410.html 410\n\
        /unavail/* /451.html 451\n\
        /* /index.html 200";

    fn redirect(location: &str, status: u16) -> Option<Result<Action, String>> {
        Some(Ok(Action::Redirect { location: location.into(), status }))
    }

    fn serve(to: &str, status: u16) -> Option<Result<Action, String>> {
        Some(Ok(Action::Serve { to: to.into(), status }))
    }

    #[test]
    fn the_spec_examples_evaluate_in_order() {
        let rules = parse(EXAMPLES).unwrap();
        assert_eq!(rules.len(), 10);
        assert_eq!(evaluate(&rules, "/redirect-one", None), redirect("/one.html", 301));
        assert_eq!(evaluate(&rules, "/302-redirect-two", None), redirect("/two.html", 302));
        assert_eq!(evaluate(&rules, "/200-index", None), serve("/index.html", 200));
        assert_eq!(
            evaluate(&rules, "/posts/2022/06/15/hello-world", None),
            redirect("/articles/2022/06/15/hello-world", 301)
        );
        assert_eq!(evaluate(&rules, "/splat/one/two.html", None), redirect("/redirected-splat/one/two.html", 301));
        assert_eq!(evaluate(&rules, "/not-found/x", None), serve("/404.html", 404));
        assert_eq!(evaluate(&rules, "/gone/x", None), serve("/410.html", 410));
        assert_eq!(evaluate(&rules, "/unavail/x/y", None), serve("/451.html", 451));
        // Too few segments for the placeholders: on to the catch-all.
        assert_eq!(evaluate(&rules, "/posts/2022/06", None), serve("/index.html", 200));
        assert_eq!(evaluate(&rules, "/redirect-one/", None), redirect("/one.html", 301));
        // The request's query goes along, winning over the rule's.
        let rules = parse("/a /b?x=1&y=2 302\n/u https://example.com/p?keep=1").unwrap();
        assert_eq!(evaluate(&rules, "/a", Some("y=3&z=4")), redirect("/b?x=1&y=3&z=4", 302));
        assert_eq!(evaluate(&rules, "/u", None), redirect("https://example.com/p?keep=1", 301));
        assert_eq!(evaluate(&rules, "/nothing", None), None);
        // The rule's query stays as written, the fragment stays last, and what a header
        // cannot carry is percent-encoded.
        let rules = parse("/f /g?a=%20b&c#top 302\n/u /ünï 301").unwrap();
        assert_eq!(evaluate(&rules, "/f", Some("d=1")), redirect("/g?a=%20b&c&d=1#top", 302));
        assert_eq!(evaluate(&rules, "/u", None), redirect("/%C3%BCn%C3%AF", 301));
    }

    /// Hostile paths and rules: an empty segment cannot make a splat start with `/` (a
    /// redirect to another origin); a value is never rewritten by a later placeholder; a
    /// rule that repeats a placeholder cannot build a target of any size.
    #[test]
    fn targets_stay_on_the_site_and_bounded() {
        let rules = parse("/old/* /:splat 301").unwrap();
        assert_eq!(evaluate(&rules, "/old//evil.com", None), redirect("/evil.com", 301));
        let rules = parse("/p/:year/:id /q/:year/:id 301").unwrap();
        assert_eq!(evaluate(&rules, "/p/:id/7", None), redirect("/q/:id/7", 301));
        let rules = parse(&format!("/:a /{}", ":a".repeat(30_000))).unwrap();
        let long = "x".repeat(4000);
        assert!(matches!(evaluate(&rules, &format!("/{long}"), None), Some(Err(_))));
        let rules = parse("/t/:a /ratio:ab:a 301").unwrap();
        assert_eq!(evaluate(&rules, "/t/1", None), redirect("/ratio1b1", 301));
    }

    #[test]
    fn bad_files_are_errors_naming_the_line() {
        for (bad, line) in [
            ("/a /b 999", 1),
            ("/a", 1),
            ("/ok /fine\n/a /b 301 extra", 2),
            ("a /b", 1),
            ("/a b", 1),
            ("/a/:x/:x /b", 1),
            ("/a/*/b /c", 1),
            ("/a https://example.com 200", 1),
            ("/a /b ok", 1),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("_redirects line {line}:")), "{bad:?}: {e}");
        }
        assert_eq!(parse("\n# only a comment\n\n").unwrap(), vec![]);
    }
}
