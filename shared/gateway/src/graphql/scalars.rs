//! Scalars the GraphQL BFFs share.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// An amount of money in the currency's minor units (cents for USD), as a string of decimal
/// digits with an optional leading minus sign. GraphQL's `Int` is 32-bit and a total can exceed
/// it; a string also survives JavaScript clients, whose numbers lose integers above 2^53.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinorUnits(pub i64);

#[Scalar(name = "MinorUnits")]
impl ScalarType for MinorUnits {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(digits) => digits
                .parse::<i64>()
                .ok()
                .filter(|_| !digits.starts_with('+'))
                .map(Self)
                .ok_or_else(|| InputValueError::custom("MinorUnits is a string of decimal digits")),
            // Clients may send small amounts as numbers; they are exact up to 2^53.
            Value::Number(number) => {
                number.as_i64().map(Self).ok_or_else(|| InputValueError::custom("MinorUnits must be a whole number"))
            }
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}
