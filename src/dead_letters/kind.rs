//! What a dead letter's `error` says, grouped: the failure's field, and its reason with the values
//! taken out, so that `stats` counts kinds of failure, not every distinct bad value.

use dataflow::Field;

use crate::redact::mask_values;

/// The field a failure is about: a contract field (`latitude`, `payload`, ...) for an entry the
/// codec refused, `database` for a row PostgreSQL refused, `deliveries` for an entry delivered
/// too often, `other` for anything else.
pub fn field_of(error: &str) -> &str {
    if error.starts_with("max deliveries exceeded") {
        return "deliveries";
    }
    if error.starts_with("postgres ") {
        return "database";
    }
    match error.split_once(": ") {
        Some((field, _)) if field == "payload" || Field::from_key(field).is_some() => field,
        _ => "other",
    }
}

/// The reason with its values masked: quoted text becomes `"…"` and numbers standing on their
/// own become `N` (digits inside a name, such as a constraint's, stay). The field and, for a
/// database refusal, the SQLSTATE and constraint are kept as they are.
pub fn kind_of(error: &str) -> String {
    let (head, rest) = match error.split_once(": ") {
        Some((head, rest)) => (head, rest),
        None => ("", error),
    };
    let mut out = String::with_capacity(error.len());
    if !head.is_empty() {
        if head.starts_with("postgres ") || field_of(error) != "other" {
            out.push_str(head);
        } else {
            out.push_str(&mask_values(head));
        }
        out.push_str(": ");
    }
    out.push_str(&mask_values(rest));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_group_by_field_and_masked_reason() {
        let cases = [
            (
                "latitude: 91 is out of range -90..=90",
                "latitude",
                "latitude: N is out of range -N..=N",
            ),
            (
                "latitude: 91.25 is out of range -90..=90",
                "latitude",
                "latitude: N is out of range -N..=N",
            ),
            (
                "timestamp: \"2026-13-01T00:00:00.000Z\": month 13 does not exist",
                "timestamp",
                "timestamp: \"…\": month N does not exist",
            ),
            (
                "max deliveries exceeded (5 deliveries)",
                "deliveries",
                "max deliveries exceeded (N deliveries)",
            ),
            (
                "postgres 23514 speed_lt_500: new row for relation \"positions\" violates check constraint \"speed_lt_500\"",
                "database",
                "postgres 23514 speed_lt_500: new row for relation \"…\" violates check constraint \"…\"",
            ),
            ("payload: is not valid JSON (EOF at line 1 column 7)", "payload", "payload: is not valid JSON (EOF at line N column N)"),
            ("something else entirely 42", "other", "something else entirely N"),
        ];
        for (error, field, kind) in cases {
            assert_eq!(field_of(error), field, "{error}");
            assert_eq!(kind_of(error), kind, "{error}");
        }
    }
}
