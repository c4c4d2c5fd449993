//! Keeping credentials out of everything that is printed: connection strings go through
//! [`redact_url`] before they are logged, and client errors (which can echo a URL) through
//! [`redact_error`]. And values kept out of what is grouped: [`mask_values`] turns a reason into
//! its kind. A leaf: it depends on nothing of the service.

/// A connection string with any password replaced by `***`, safe to log.
///
/// Handles URLs (`scheme://user:password@host`, and `password=` query parameters) and
/// PostgreSQL's key=value form (`host=h password=p`).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    redact_key_values(&out)
}

/// Replaces the value after every `password=` (URL query or key=value form).
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.to_ascii_lowercase().find("password=") {
        let value_start = found + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let tail = &rest[value_start..];
        let value_end = if let Some(quoted) = tail.strip_prefix('\'') {
            quoted.find('\'').map_or(tail.len(), |i| i + 2)
        } else {
            tail.find([' ', '&', '#']).unwrap_or(tail.len())
        };
        rest = &tail[value_end..];
    }
    out.push_str(rest);
    out
}

/// An error's message with its sources, credentials removed (client errors may quote the
/// connection string). A source whose text the message already ends with is not repeated
/// (several clients wrap an I/O error and print it again).
pub fn redact_error(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    redact_url(&message)
}

/// `text` with its values masked: quoted text becomes `"…"` and numbers standing on their own
/// become `N` (digits inside a name, such as a constraint's, stay), so that reasons that differ
/// only in their values compare equal.
pub fn mask_values(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let after_name = i > 0
            && chars
                .get(i - 1)
                .is_some_and(|p| p.is_alphanumeric() || *p == '_');
        if c == '"' {
            // a quoted value, escapes included, up to its closing quote
            i += 1;
            while let Some(&inner) = chars.get(i) {
                i += if inner == '\\' { 2 } else { 1 };
                if inner == '"' {
                    break;
                }
            }
            out.push_str("\"…\"");
        } else if c.is_ascii_digit() && !after_name {
            // a number standing on its own: digits, a fraction, an exponent
            while digit(i) {
                i += 1;
            }
            if chars.get(i) == Some(&'.') && digit(i + 1) {
                i += 1;
                while digit(i) {
                    i += 1;
                }
            }
            if matches!(chars.get(i), Some('e' | 'E')) {
                let sign = usize::from(matches!(chars.get(i + 1), Some('+' | '-')));
                if digit(i + 1 + sign) {
                    i += 1 + sign;
                    while digit(i) {
                        i += 1;
                    }
                }
            }
            out.push('N');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/x",
                "postgres://app:***@db:5432/x",
            ),
            ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
            ("rediss://user:p%40ss@cache", "rediss://user:***@cache"),
            ("postgres://app@db/x", "postgres://app@db/x"),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "host=db user=app password=s3cret dbname=x",
                "host=db user=app password=*** dbname=x",
            ),
            (
                "host=db password='a b c' dbname=x",
                "host=db password=*** dbname=x",
            ),
            (
                "postgres://db/x?user=app&password=s3cret&sslmode=require",
                "postgres://db/x?user=app&password=***&sslmode=require",
            ),
        ];
        for (input, expected) in cases {
            let redacted = redact_url(input);
            assert_eq!(redacted, expected, "{input}");
            assert!(!redacted.contains("s3cret") && !redacted.contains("p%40ss"));
        }
    }

    #[test]
    fn a_source_repeated_at_the_end_of_the_message_is_said_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let text = redact_error(&error);
        assert_eq!(text.matches("refused").count(), 1, "{text}");
    }
}
