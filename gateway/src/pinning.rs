//! The IPFS Pinning Service API over HTTP (ipfs/pinning-services-api-spec), served by
//! `cairn daemon` on `Addresses.PinningService` when `PinningService.Tokens` holds a token.
//!
//! - `GET /pins`: the caller's requests, newest first, filtered by `cid` (comma-separated,
//!   at most 10), `name` with `match` (`exact`, `iexact`, `partial`, `ipartial`), `status`
//!   (comma-separated), `before`, `after` (RFC 3339, exclusive), `limit` (1 to 1000, default
//!   10) and `meta` (a JSON object every result's metadata must contain). Without any filter
//!   only `pinned` requests are listed, as the spec says; with a filter but no `status`, every
//!   status is.
//!   `count` is the number of matches before `limit`.
//! - `POST /pins`: a new request (202, its `PinStatus`).
//! - `GET /pins/{requestid}`, `POST /pins/{requestid}` (replace: 202 and a new ID),
//!   `DELETE /pins/{requestid}` (202).
//!
//! Every call needs `Authorization: Bearer <token>`; the token names the account, and an
//! account sees only its own requests. Errors are `{"error": {"reason", "details"}}`: 400 for
//! bad input, 401 without a valid token, 404 for an unknown request. Bodies are JSON of at
//! most [`MAX_BODY`] bytes. Responses allow any origin (there are no cookies to protect), so
//! a web page can use the service with its token.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_node::merkle::Cid;
use cairn_node::pinning::{self, NameMatch, PinRequest, PinService, PinSpec, Query, Status};
use http_body_util::BodyExt as _;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::body::{self, Body};
use crate::error::HttpError;

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 << 10;
/// The most CIDs one listing may filter by.
const MAX_CIDS: usize = 10;
/// The most delegates a status may list.
const MAX_DELEGATES: usize = 20;
/// The largest `limit`.
const MAX_LIMIT: usize = 1000;

/// The service's shared state.
#[derive(Debug)]
pub struct PinningApi {
    service: Arc<PinService>,
    /// (account, token).
    tokens: Vec<(String, String)>,
    /// Where requested content can be sent: this node's addresses.
    delegates: Vec<String>,
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(format!("{v}\n")));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn failure(f: HttpError) -> Response<Body> {
    json_response(f.status, &json!({"error": {"reason": f.reason(), "details": f.message}}))
}

impl PinningApi {
    /// The API over `service`, for the accounts in `tokens` (account name to token), telling
    /// clients to send content to `delegates`.
    pub fn new(service: Arc<PinService>, tokens: &BTreeMap<String, String>, delegates: Vec<String>) -> PinningApi {
        let tokens = tokens.iter().map(|(a, t)| (a.clone(), t.clone())).collect();
        // The spec allows 1 to 20 distinct delegates.
        let mut seen = std::collections::HashSet::new();
        let delegates = delegates.into_iter().filter(|d| seen.insert(d.clone())).take(MAX_DELEGATES).collect();
        PinningApi { service, tokens, delegates }
    }

    /// The account whose token the request carries.
    fn account(&self, req: &Request<hyper::body::Incoming>) -> Option<&str> {
        let given = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
        let token = given.strip_prefix("Bearer ")?.trim();
        self.tokens.iter().find(|(_, t)| crate::api::same_secret(t, token)).map(|(a, _)| a.as_str())
    }

    fn status_json(&self, r: &PinRequest) -> Value {
        let mut pin = json!({"cid": r.pin.cid, "origins": r.pin.origins, "meta": r.pin.meta});
        if let Some(n) = &r.pin.name {
            pin["name"] = json!(n);
        }
        json!({
            "requestid": r.id,
            "status": r.status.as_str(),
            "created": r.created(),
            "pin": pin,
            "delegates": self.delegates,
            "info": r.status_info(),
        })
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let mut r = if req.method() == Method::OPTIONS {
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            let h = r.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
            r
        } else {
            self.route(req).await.unwrap_or_else(failure)
        };
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        r
    }

    async fn route(&self, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, HttpError> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let id = match path.strip_prefix("/pins") {
            Some("") => None,
            Some(rest) if rest.starts_with('/') && rest.len() > 1 && !rest[1..].contains('/') => {
                Some(rest[1..].to_owned())
            }
            _ => {
                return Err(HttpError::new(StatusCode::NOT_FOUND, format!("{path} is not a Pinning Service API path")))
            }
        };
        let Some(account) = self.account(&req).map(str::to_owned) else {
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "an access token is required: Authorization: Bearer <token>",
            ));
        };
        let service = &self.service;
        match (req.method().clone(), id) {
            (Method::GET, None) => {
                let q = query(req.uri().query().unwrap_or(""))?;
                let (count, results) = service.list(&account, &q)?;
                let results: Vec<Value> = results.iter().map(|r| self.status_json(r)).collect();
                Ok(json_response(StatusCode::OK, &json!({"count": count, "results": results})))
            }
            (Method::POST, None) => {
                let spec = read_spec(req).await?;
                let r = service.add(&account, spec)?;
                Ok(json_response(StatusCode::ACCEPTED, &self.status_json(&r)))
            }
            (Method::GET, Some(id)) => {
                Ok(json_response(StatusCode::OK, &self.status_json(&service.get(&account, &id)?)))
            }
            (Method::POST, Some(id)) => {
                let spec = read_spec(req).await?;
                let r = service.replace(&account, &id, spec)?;
                Ok(json_response(StatusCode::ACCEPTED, &self.status_json(&r)))
            }
            (Method::DELETE, Some(id)) => {
                service.remove(&account, &id)?;
                let mut r = Response::new(body::empty());
                *r.status_mut() = StatusCode::ACCEPTED;
                Ok(r)
            }
            (m, _) => Err(HttpError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{m} is not allowed here"))),
        }
    }
}

/// Reads a `Pin` object from the body.
async fn read_spec(req: Request<hyper::body::Incoming>) -> Result<PinSpec, HttpError> {
    let body = http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| HttpError::bad(format!("cannot read the body (at most {MAX_BODY} bytes): {e}")))?
        .to_bytes();
    serde_json::from_slice::<PinSpec>(&body).map_err(|e| HttpError::bad(format!("the body is not a Pin object: {e}")))
}

/// The listing query parser below, for the fuzz targets in `fuzz/`: the filters, or the 400
/// it answers.
#[doc(hidden)]
pub fn parse_listing_query(raw: &str) -> Result<Query, HttpError> {
    query(raw)
}

/// Parses a listing's query string.
fn query(raw: &str) -> Result<Query, HttpError> {
    let mut q = Query::default();
    let mut how = NameMatch::default();
    let mut status_given = false;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "cid" => {
                q.cids = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse::<Cid>().map_err(|e| HttpError::bad(format!("invalid CID {s:?}: {e}"))))
                    .collect::<Result<_, _>>()?;
                if q.cids.len() > MAX_CIDS {
                    return Err(HttpError::bad(format!("at most {MAX_CIDS} CIDs per listing")));
                }
            }
            "name" => {
                if v.chars().count() > pinning::MAX_NAME_CHARS {
                    return Err(HttpError::bad(format!("name is longer than {} characters", pinning::MAX_NAME_CHARS)));
                }
                q.name = Some((v.into_owned(), NameMatch::Exact));
            }
            "match" => how = v.parse()?,
            "status" => {
                status_given = true;
                q.statuses =
                    v.split(',').filter(|s| !s.is_empty()).map(str::parse::<Status>).collect::<Result<_, _>>()?;
                if q.statuses.is_empty() {
                    return Err(HttpError::bad("status is empty"));
                }
            }
            "before" => q.before = Some(pinning::parse_rfc3339(&v)?),
            "after" => q.after = Some(pinning::parse_rfc3339(&v)?),
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| HttpError::bad(format!("limit {v:?} is not a number from 1 to {MAX_LIMIT}")))?;
            }
            "meta" => {
                q.meta = serde_json::from_str(&v)
                    .map_err(|e| HttpError::bad(format!("meta must be a JSON object of strings: {e}")))?;
            }
            // Unknown parameters are ignored, as the spec's clients may send newer ones.
            _ => {}
        }
    }
    if let Some((_, m)) = &mut q.name {
        *m = how;
    }
    let filtered =
        !q.cids.is_empty() || q.name.is_some() || q.before.is_some() || q.after.is_some() || !q.meta.is_empty();
    if filtered && !status_given {
        q.statuses = vec![Status::Queued, Status::Pinning, Status::Pinned, Status::Failed];
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_queries_parse_and_bad_ones_are_refused() {
        let q = query("cid=bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy&name=Pho&match=ipartial&status=queued,failed&limit=5&before=2026-01-01T00:00:00Z&meta=%7B%22a%22%3A%22b%22%7D").ok().unwrap();
        assert_eq!(q.cids.len(), 1);
        assert_eq!(q.name, Some(("Pho".into(), NameMatch::IPartial)));
        assert_eq!(q.statuses, vec![Status::Queued, Status::Failed]);
        assert_eq!(q.limit, 5);
        assert_eq!(q.before, Some(1_767_225_600_000));
        assert_eq!(q.meta.get("a").map(String::as_str), Some("b"));
        assert_eq!(query("").ok().unwrap(), Query::default());
        assert_eq!(query("limit=3").ok().unwrap().statuses, vec![Status::Pinned], "no filter: pinned only");
        assert_eq!(query("name=x").ok().unwrap().statuses.len(), 4, "a filter without status: every status");
        for bad in [
            "cid=nope",
            "status=done",
            "limit=0",
            "limit=1001",
            "limit=x",
            "before=yesterday",
            "match=fuzzy",
            "meta=%5B1%5D",
            "meta=%7B%22a%22%3A1%7D",
        ] {
            assert!(query(bad).is_err(), "{bad}");
        }
        let many = ["bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"; 11].join(",");
        assert!(query(&format!("cid={many}")).is_err());
    }
}
