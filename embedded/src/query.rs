//! A request's query string, decoded the way s3s decodes it (form-urlencoded, names
//! included), so that a policy check sees the parameter s3s will act on: checking the raw
//! text let `X-Amz-Expire%73` past the presign lifetime cap (review finding F7).

/// One `name[=value]` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The decoded name.
    pub name: String,
    /// The decoded value; `None` when the parameter has no `=` (`?uploads`).
    pub value: Option<String>,
    /// The parameter as sent.
    raw: String,
}

/// A decoded query string, in the order sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<Pair>,
}

fn decode(text: &str) -> String {
    form_urlencoded::parse(text.as_bytes()).next().map(|(k, _)| k.into_owned()).unwrap_or_default()
}

impl Query {
    /// Decodes `raw` (the part after `?`), if any.
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => Pair { name: decode(n), value: Some(decode(v)), raw: p.to_owned() },
                None => Pair { name: decode(p), value: None, raw: p.to_owned() },
            })
            .collect();
        Self { pairs }
    }

    /// Every parameter.
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// Whether a parameter named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|p| p.name == name)
    }

    /// The value of the first parameter named `name` (empty when it has no `=`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|p| p.name == name).map(|p| p.value.as_deref().unwrap_or_default())
    }

    /// Every value of parameters named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |p| p.name == name).map(|p| p.value.as_deref().unwrap_or_default())
    }

    /// The query as sent, without the parameters named in `names`; `None` when nothing is left.
    pub fn raw_without(&self, names: &[&str]) -> Option<String> {
        let kept: Vec<&str> =
            self.pairs.iter().filter(|p| !names.contains(&p.name.as_str())).map(|p| p.raw.as_str()).collect();
        (!kept.is_empty()).then(|| kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_decoded_and_the_raw_form_kept() {
        let q = Query::parse(Some("X-Amz-Expire%73=99&uploads&prefix=a%2Fb+c&empty="));
        assert_eq!(q.get("X-Amz-Expires"), Some("99"));
        assert_eq!(q.get("uploads"), Some(""));
        assert_eq!(q.pairs()[1].value, None);
        assert_eq!(q.get("prefix"), Some("a/b c"));
        assert_eq!(q.pairs()[3].value.as_deref(), Some(""));
        assert_eq!(q.raw_without(&["X-Amz-Expires", "uploads"]).as_deref(), Some("prefix=a%2Fb+c&empty="));
        assert_eq!(Query::parse(Some("a=1")).raw_without(&["a"]), None);
    }
}
