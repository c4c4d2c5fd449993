//! `timestamptz` straight from microseconds since the Unix epoch (no date library on the hot
//! path), for the idempotent write path's arrays; the COPY path writes the same value itself.

use bytes::BytesMut;
use postgres_types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// Microseconds between 1970-01-01 (Unix) and 2000-01-01 (PostgreSQL's epoch).
pub(super) const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// A `timestamptz` given as microseconds since the Unix epoch (binary wire format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl ToSql for Timestamp {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // The codec bounds timestamps to PostgreSQL's range, far inside i64 after the shift.
        let micros = self
            .0
            .checked_sub(PG_EPOCH_OFFSET_MICROS)
            .ok_or("timestamp out of range")?;
        out.extend_from_slice(&micros.to_be_bytes());
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 8] = raw.try_into().map_err(|_| "a timestamptz is 8 bytes")?;
        let micros = i64::from_be_bytes(bytes);
        Ok(Timestamp(
            micros
                .checked_add(PG_EPOCH_OFFSET_MICROS)
                .ok_or("timestamp out of range")?,
        ))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }
}
