//! Money as integers: prices in nano-units, amounts in atto-units.
//!
//! A price table says "2.5 per 1,000,000 tokens"; a float would make a sum over a million
//! exchanges drift by cents. Here a price is read from its decimal text into a whole
//! number of nano-units (10⁻⁹ of the currency unit, nine decimals, which every published
//! per-token price fits), and `per_tokens` must be a power of ten up to 10⁹. Then
//! `tokens × price_nanos / per_tokens` is always a whole number of atto-units (10⁻¹⁸):
//! every exchange's cost is exact, sums are exact, and the decimal string printed is the
//! exact value, never a rounding of a rounding.

use core::fmt;

/// Nano-units (10⁻⁹) of the currency in one unit.
pub const NANOS_PER_UNIT: u64 = 1_000_000_000;
/// Atto-units (10⁻¹⁸) of the currency in one unit.
pub const ATTOS_PER_UNIT: u128 = 1_000_000_000_000_000_000;
/// The largest price a table may hold: one million currency units (per `per_tokens`
/// tokens, or per request). Bounds the arithmetic, far above any real price.
pub const MAX_PRICE_NANOS: u64 = 1_000_000 * NANOS_PER_UNIT;

/// An exact amount of money, in atto-units (10⁻¹⁸) of a table's currency.
///
/// [`Display`](fmt::Display) prints the exact decimal value, without trailing zeros:
/// `Amount::from_attos(67_500_000_000_000)` prints `0.0000675`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u128);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// An amount of `attos` atto-units.
    pub const fn from_attos(attos: u128) -> Amount {
        Amount(attos)
    }

    /// The amount in atto-units (10⁻¹⁸).
    pub const fn attos(self) -> u128 {
        self.0
    }

    /// The amount in whole micro-units (10⁻⁶), rounded down: the unit of the cost
    /// counters and of `cost_micros` budgets. (A counter summing rounded amounts loses
    /// under one micro-unit per exchange; an exact total is the sum of [`Amount`]s.)
    pub const fn micros_floor(self) -> u128 {
        self.0 / 1_000_000_000_000
    }

    /// `self + other`, or `None` past about 3.4 × 10²⁰ currency units.
    pub const fn checked_add(self, other: Amount) -> Option<Amount> {
        match self.0.checked_add(other.0) {
            Some(v) => Some(Amount(v)),
            None => None,
        }
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / ATTOS_PER_UNIT;
        let frac = self.0 % ATTOS_PER_UNIT;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let mut digits = [b'0'; 18];
        let mut rest = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let mut len = 18;
        while digits[len - 1] == b'0' {
            len -= 1;
        }
        // Only ASCII digits were written.
        let digits = core::str::from_utf8(&digits[..len]).map_err(|_| fmt::Error)?;
        write!(f, "{whole}.{digits}")
    }
}

/// Why a price's text is not a price.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceTextError {
    /// Not a plain non-negative decimal number.
    NotADecimal,
    /// More than nine decimals (finer than a nano-unit).
    TooPrecise,
    /// Above [`MAX_PRICE_NANOS`].
    TooLarge,
}

impl fmt::Display for PriceTextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriceTextError::NotADecimal => "not a non-negative decimal number",
            PriceTextError::TooPrecise => "more than 9 decimals (finer than a nano-unit)",
            PriceTextError::TooLarge => "above 1,000,000 per unit",
        })
    }
}

/// Reads a decimal number (`2.5`, `0.075`, `3`, `1e-7`, `2.5E+1`) exactly into nano-units.
pub fn parse_price_nanos(text: &str) -> Result<u64, PriceTextError> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => {
            let e = &text[i + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(PriceTextError::NotADecimal);
            }
            let v: i32 = digits.parse().map_err(|_| PriceTextError::NotADecimal)?;
            (&text[..i], if e.starts_with('-') { -v } else { v })
        }
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac.is_empty())
    {
        return Err(PriceTextError::NotADecimal);
    }
    // The value is digits × 10^(exp − frac.len()); in nano-units, × 10^9.
    let digits = int.bytes().chain(frac.bytes()).skip_while(|&b| b == b'0');
    let mut value: u128 = 0;
    let mut count = 0usize;
    for b in digits {
        count += 1;
        if count > 30 {
            return Err(PriceTextError::TooLarge);
        }
        value = value * 10 + u128::from(b - b'0');
    }
    let mut scale = exp + 9 - frac.len() as i32;
    while scale < 0 {
        if value % 10 != 0 {
            return Err(PriceTextError::TooPrecise);
        }
        value /= 10;
        scale += 1;
    }
    while scale > 0 && value != 0 {
        value = value.checked_mul(10).ok_or(PriceTextError::TooLarge)?;
        if value > u128::from(MAX_PRICE_NANOS) {
            return Err(PriceTextError::TooLarge);
        }
        scale -= 1;
    }
    if value > u128::from(MAX_PRICE_NANOS) {
        return Err(PriceTextError::TooLarge);
    }
    Ok(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_exactly() {
        assert_eq!(parse_price_nanos("2.5"), Ok(2_500_000_000));
        assert_eq!(parse_price_nanos("0.075"), Ok(75_000_000));
        assert_eq!(parse_price_nanos("3"), Ok(3_000_000_000));
        assert_eq!(parse_price_nanos("0"), Ok(0));
        assert_eq!(parse_price_nanos("0.000000001"), Ok(1));
        assert_eq!(parse_price_nanos("1e-7"), Ok(100));
        assert_eq!(parse_price_nanos("2.5E+1"), Ok(25_000_000_000));
        assert_eq!(parse_price_nanos("1000000"), Ok(MAX_PRICE_NANOS));
        assert_eq!(parse_price_nanos("1.2000000000"), Ok(1_200_000_000));
        assert_eq!(
            parse_price_nanos("0.0000000001"),
            Err(PriceTextError::TooPrecise)
        );
        assert_eq!(parse_price_nanos("1e-10"), Err(PriceTextError::TooPrecise));
        assert_eq!(
            parse_price_nanos("1000000.000000001"),
            Err(PriceTextError::TooLarge)
        );
        assert_eq!(parse_price_nanos("1e300"), Err(PriceTextError::TooLarge));
        for bad in [
            "", "-1", "1.", ".5", "1e", "abc", "1.2.3", "NaN", "1e99999", " 1",
        ] {
            assert_eq!(
                parse_price_nanos(bad),
                Err(PriceTextError::NotADecimal),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn amounts_print_exactly() {
        assert_eq!(Amount::ZERO.to_string(), "0");
        assert_eq!(Amount::from_attos(ATTOS_PER_UNIT * 12).to_string(), "12");
        assert_eq!(
            Amount::from_attos(67_500_000_000_000).to_string(),
            "0.0000675"
        );
        assert_eq!(Amount::from_attos(1).to_string(), "0.000000000000000001");
        assert_eq!(
            Amount::from_attos(ATTOS_PER_UNIT + ATTOS_PER_UNIT / 2).to_string(),
            "1.5"
        );
        assert_eq!(
            Amount::from_attos(u128::MAX).to_string(),
            "340282366920938463463.374607431768211455"
        );
        assert_eq!(Amount::from_attos(2_999_999_999_999).micros_floor(), 2);
    }
}
