//! The contract's fields: one enum, one name each, so a field's name is spelled once.

use std::fmt;

/// A field of the wire contract: the payload's top-level keys, and `payload` itself (the entry's
/// field, for errors about the payload as a whole).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `device_id`: the tracker's identity.
    DeviceId,
    /// `timestamp`: the fix time.
    Timestamp,
    /// `latitude`.
    Latitude,
    /// `longitude`.
    Longitude,
    /// `altitude`.
    Altitude,
    /// `angle`: heading.
    Angle,
    /// `speed`.
    Speed,
    /// `satellites` in view.
    Satellites,
    /// `priority`.
    Priority,
    /// `event_id`: the IO element that triggered the record.
    EventId,
    /// `attributes`: the IO elements.
    Attributes,
    /// The entry's `payload` field: missing, not UTF-8, not JSON, not an object.
    Payload,
}

impl Field {
    /// The top-level fields holding one scalar value, in slot order ([`Field::slot`]).
    pub const SCALARS: [Field; 10] = [
        Field::DeviceId,
        Field::Timestamp,
        Field::Latitude,
        Field::Longitude,
        Field::Altitude,
        Field::Angle,
        Field::Speed,
        Field::Satellites,
        Field::Priority,
        Field::EventId,
    ];

    /// The name as it appears in payloads, dead letters and the `field` metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Field::DeviceId => "device_id",
            Field::Timestamp => "timestamp",
            Field::Latitude => "latitude",
            Field::Longitude => "longitude",
            Field::Altitude => "altitude",
            Field::Angle => "angle",
            Field::Speed => "speed",
            Field::Satellites => "satellites",
            Field::Priority => "priority",
            Field::EventId => "event_id",
            Field::Attributes => "attributes",
            Field::Payload => "payload",
        }
    }

    /// The field a payload key names (`None` for keys outside the contract, which are ignored).
    /// One `match` on the key's bytes: the decoder calls it for every top-level key.
    #[inline]
    pub fn from_key(key: &str) -> Option<Field> {
        Some(match key {
            "device_id" => Field::DeviceId,
            "timestamp" => Field::Timestamp,
            "latitude" => Field::Latitude,
            "longitude" => Field::Longitude,
            "altitude" => Field::Altitude,
            "angle" => Field::Angle,
            "speed" => Field::Speed,
            "satellites" => Field::Satellites,
            "priority" => Field::Priority,
            "event_id" => Field::EventId,
            "attributes" => Field::Attributes,
            _ => return None,
        })
    }

    /// A scalar field's index in [`Field::SCALARS`].
    #[inline]
    pub const fn slot(self) -> Option<usize> {
        Some(match self {
            Field::DeviceId => 0,
            Field::Timestamp => 1,
            Field::Latitude => 2,
            Field::Longitude => 3,
            Field::Altitude => 4,
            Field::Angle => 5,
            Field::Speed => 6,
            Field::Satellites => 7,
            Field::Priority => 8,
            Field::EventId => 9,
            Field::Attributes | Field::Payload => return None,
        })
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl PartialEq<&str> for Field {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

impl PartialEq<String> for Field {
    fn eq(&self, other: &String) -> bool {
        self.name() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_slots_follow_the_list() {
        for (slot, field) in Field::SCALARS.into_iter().enumerate() {
            assert_eq!(Field::from_key(field.name()), Some(field));
            assert_eq!(field.slot(), Some(slot));
        }
        assert_eq!(Field::from_key("attributes"), Some(Field::Attributes));
        assert_eq!(Field::from_key("payload"), None, "not a payload key");
        assert_eq!(Field::from_key("unknown"), None);
        assert_eq!(Field::Attributes.slot(), None);
        assert_eq!(Field::Payload.slot(), None);
        for field in [Field::Attributes, Field::Payload]
            .into_iter()
            .chain(Field::SCALARS)
        {
            let key = Field::from_key(field.name());
            assert_eq!(key.is_some(), field != Field::Payload, "{field}");
        }
    }
}
