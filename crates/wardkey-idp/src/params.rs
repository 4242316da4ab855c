//! Strict parsing of `application/x-www-form-urlencoded` parameters, for
//! query strings and form bodies alike.
//!
//! RFC 6749 §3.1 and §3.2: parameters MUST NOT be included more than once,
//! and parameters sent without a value are treated as omitted. Serde-based
//! extractors silently keep the first or last duplicate, so OAuth endpoints
//! parse with this instead.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;

/// Parsed parameters, each name at most once.
#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

impl Params {
    /// Parse urlencoded `input`, refusing repeated names.
    pub fn parse(input: &[u8]) -> Result<Self, ParamsError> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                return Err(ParamsError(format!("the parameter {k:?} is repeated")));
            }
        }
        Ok(Self(map))
    }

    /// Parse a form body, requiring the form content type (RFC 6749 §3.2).
    pub fn from_form(headers: &HeaderMap, body: &[u8]) -> Result<Self, ParamsError> {
        let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(ParamsError("the body must be application/x-www-form-urlencoded".into()));
        }
        Self::parse(body)
    }

    /// The value of `name`, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value of `name`, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&str, ParamsError> {
        self.get(name).ok_or_else(|| ParamsError(format!("the parameter {name:?} is missing")))
    }

    /// Merge `other` in; a name in both is a repetition.
    pub fn merge(mut self, other: Params) -> Result<Self, ParamsError> {
        for (k, v) in other.0 {
            if self.0.insert(k.clone(), v).is_some() {
                return Err(ParamsError(format!("the parameter {k:?} is repeated")));
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_empty() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=1&b=&c=x%20y").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y"));
        assert!(p.require("z").unwrap_err().0.contains("\"z\""));
    }
}
