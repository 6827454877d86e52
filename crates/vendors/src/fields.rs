//! Small helpers every vendor client uses to read vendor JSON and to check what goes into
//! a URL.

use serde_json::Value;
use switchboard_model::RecipeError;

/// A non-empty string field, or a number as text (some vendors send ids as numbers).
pub(crate) fn text(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A list of strings, sent as an array or as one string.
pub(crate) fn strings(v: &Value, key: &str) -> Vec<String> {
    match v.get(key) {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => vec![],
    }
}

/// An id that is safe to put in a URL path: letters, digits, `-` and `_`.
pub(crate) fn path_id<'a>(what: &str, id: &'a str) -> Result<&'a str, RecipeError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(RecipeError::invalid(
            "id",
            format!("'{id}' is not a {what} id"),
        ));
    }
    Ok(id)
}

/// A page size between 1 and 100 (`default` when unset).
pub(crate) fn page_size(limit: Option<u32>, default: u32) -> Result<u32, RecipeError> {
    let size = limit.unwrap_or(default);
    if !(1..=100).contains(&size) {
        return Err(RecipeError::invalid("limit", "must be between 1 and 100"));
    }
    Ok(size)
}

/// The page number a cursor of ours holds (1 without a cursor).
pub(crate) fn page_number(cursor: Option<&str>) -> Result<u64, RecipeError> {
    cursor.map_or(Ok(1), |c| {
        c.parse()
            .map_err(|_| RecipeError::invalid("cursor", "not a cursor this connection gave"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reading_and_checking() {
        let v = json!({"a": "x", "b": "", "n": 12, "l": ["p", "q"], "one": "r"});
        assert_eq!(text(&v, "a").as_deref(), Some("x"));
        assert_eq!(text(&v, "b"), None);
        assert_eq!(text(&v, "n").as_deref(), Some("12"));
        assert_eq!(strings(&v, "l"), ["p", "q"]);
        assert_eq!(strings(&v, "one"), ["r"]);
        assert!(path_id("test", "ab_C-1").is_ok());
        assert!(path_id("test", "../x").is_err());
        assert_eq!(page_size(None, 20), Ok(20));
        assert!(page_size(Some(101), 20).is_err());
        assert_eq!(page_number(Some("3")), Ok(3));
        assert!(page_number(Some("x")).is_err());
    }
}
