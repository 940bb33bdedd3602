//! Kubernetes resource quantities ("100m", "1.5", "2k", "1Gi", "5e3") read the way the controller
//! reads them: `MilliValue()` for targets and metric values, `AsApproximateFloat64()` for tolerances.

use thiserror::Error;

/// A quantity string that is not of the form `<signedNumber><suffix>`.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {0:?}")]
pub struct QuantityError(pub String);

/// A parsed quantity: `mantissa * 10^exp10 * 2^exp2`, sign apart.
struct Parsed {
    negative: bool,
    mantissa: u128,
    /// Set when the mantissa had more digits than fit; the value then saturates.
    mantissa_overflow: bool,
    exp10: i32,
    exp2: u32,
}

fn parse(text: &str) -> Result<Parsed, QuantityError> {
    let err = || QuantityError(text.to_string());
    let s = text.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(err());
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: u128 = 0;
    let mut mantissa_overflow = false;
    for digit in whole.bytes().chain(fraction.bytes()) {
        let d = u128::from(digit - b'0');
        match mantissa.checked_mul(10).and_then(|m| m.checked_add(d)) {
            Some(m) => mantissa = m,
            None => mantissa_overflow = true,
        }
    }
    let mut exp10 = -(fraction.len() as i32);
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        s if s.len() > 1 && (s.starts_with('e') || s.starts_with('E')) => {
            let exponent: i32 = s[1..].parse().map_err(|_| err())?;
            exp10 = exp10.checked_add(exponent).ok_or_else(err)?;
        }
        _ => return Err(err()),
    }
    Ok(Parsed {
        negative,
        mantissa,
        mantissa_overflow,
        exp10,
        exp2,
    })
}

/// The quantity in thousandths, rounded away from zero, saturating at the `i64` range: the
/// controller's `Quantity.MilliValue()` (so "0.1m" reads as 1 and "1.5" as 1500).
pub fn milli_value(text: &str) -> Result<i64, QuantityError> {
    let parsed = parse(text)?;
    let magnitude = if parsed.mantissa == 0 {
        0
    } else if parsed.mantissa_overflow {
        i64::MAX
    } else {
        scaled_magnitude(parsed.mantissa, parsed.exp10 + 3, parsed.exp2)
    };
    Ok(if parsed.negative {
        -magnitude
    } else {
        magnitude
    })
}

/// `ceil(mantissa * 10^exp10 * 2^exp2)`, saturating at `i64::MAX`.
fn scaled_magnitude(mantissa: u128, exp10: i32, exp2: u32) -> i64 {
    let saturate = |v: Option<u128>| v.map_or(i64::MAX, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let with_binary = mantissa.checked_mul(1u128 << exp2);
    if exp10 >= 0 {
        let factor = 10u128.checked_pow(exp10 as u32);
        return saturate(with_binary.and_then(|m| factor.and_then(|f| m.checked_mul(f))));
    }
    let Some(numerator) = with_binary else {
        return i64::MAX;
    };
    match 10u128.checked_pow(exp10.unsigned_abs()) {
        Some(divisor) => saturate(Some(numerator.div_ceil(divisor))),
        // Smaller than any representable step but not zero: rounds up to one.
        None => 1,
    }
}

/// The quantity as an `f64`: the controller's `Quantity.AsApproximateFloat64()`.
pub fn approximate_f64(text: &str) -> Result<f64, QuantityError> {
    let parsed = parse(text)?;
    // Dividing by an exact power of ten rounds once, so "0.05" reads as the literal 0.05.
    let decimal = if parsed.exp10 < 0 {
        parsed.mantissa as f64 / 10f64.powi(-parsed.exp10)
    } else {
        parsed.mantissa as f64 * 10f64.powi(parsed.exp10)
    };
    let magnitude = decimal * 2f64.powi(parsed.exp2 as i32);
    Ok(if parsed.negative {
        -magnitude
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milli_value_reads_decimal_suffixes() {
        assert_eq!(milli_value("100m"), Ok(100));
        assert_eq!(milli_value("1.5"), Ok(1500));
        assert_eq!(milli_value("2k"), Ok(2_000_000));
        assert_eq!(milli_value("30"), Ok(30_000));
        assert_eq!(milli_value("5e3"), Ok(5_000_000));
        assert_eq!(milli_value("1E-3"), Ok(1));
    }

    #[test]
    fn milli_value_reads_binary_suffixes() {
        assert_eq!(milli_value("1Ki"), Ok(1_024_000));
        assert_eq!(milli_value("1Mi"), Ok(1_048_576_000));
    }

    #[test]
    fn milli_value_rounds_sub_milli_amounts_up() {
        assert_eq!(milli_value("0.1m"), Ok(1));
        assert_eq!(milli_value("1n"), Ok(1));
        assert_eq!(milli_value("0"), Ok(0));
        assert_eq!(milli_value("-1.5"), Ok(-1500));
    }

    #[test]
    fn milli_value_saturates_instead_of_overflowing() {
        assert_eq!(milli_value("100E"), Ok(i64::MAX));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in ["", "abc", "1.2.3", "10x", "1e", "."] {
            assert!(milli_value(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn approximate_f64_reads_tolerances() {
        assert_eq!(approximate_f64("0.05"), Ok(0.05));
        assert_eq!(approximate_f64("50m"), Ok(0.05));
        assert_eq!(approximate_f64("0"), Ok(0.0));
    }
}
