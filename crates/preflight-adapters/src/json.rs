//! Lenient accessors over `serde_json::Value`. Vendor schemas drift between API versions and
//! SDKs (numbers sent as strings, zero values omitted by protobuf JSON, optional arrays), so
//! the parsers read values through these helpers instead of rigid structs.

use serde_json::Value;

/// A number, or a string holding one (protobuf JSON encodes int64 as strings).
pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|x| x.is_finite())
}

pub(crate) fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(as_f64)
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The array under `key`, or an empty slice when it is missing or not an array.
pub(crate) fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A 1-based page number field turned into a 0-based index (`None` if absent or < 1).
pub(crate) fn page_index(v: &Value, key: &str) -> Option<usize> {
    let n = num(v, key)?;
    // `as` saturates, so absurd page numbers stay huge and hit the page limit downstream.
    (n >= 1.0 && n.fract() == 0.0).then(|| (n as usize).saturating_sub(1))
}
