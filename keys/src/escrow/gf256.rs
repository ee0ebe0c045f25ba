//! Shamir's secret sharing of 32 bytes over GF(2^8), byte by byte.
//!
//! The field is GF(2^8) with the AES polynomial x^8 + x^4 + x^3 + x + 1; multiplication and
//! inversion are branch-free on secret data. Each byte of the secret is the constant term
//! of a random polynomial of degree K - 1 (coefficients uniform from the OS generator),
//! evaluated at x = 1..=N; any K points give it back by Lagrange interpolation at 0.

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::secret::{SECRET_LEN, Secret32};

/// Product in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, without branches on the operands.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let high = a >> 7;
        a = (a << 1) ^ (0x1b & 0u8.wrapping_sub(high));
        b >>= 1;
    }
    product
}

/// Multiplicative inverse (a^254); 0 maps to 0.
fn inv(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exponent = 254u8;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exponent >>= 1;
    }
    result
}

/// Splits `secret` into `n` points (x = 1..=n) of random polynomials of degree `k - 1`.
pub(super) fn split_bytes(
    secret: &[u8; SECRET_LEN],
    k: u8,
    n: u8,
) -> Vec<(u8, Zeroizing<[u8; SECRET_LEN]>)> {
    let mut coefficients = Zeroizing::new(vec![0u8; usize::from(k)]);
    let mut out: Vec<(u8, Zeroizing<[u8; SECRET_LEN]>)> = (1..=n)
        .map(|x| (x, Zeroizing::new([0u8; SECRET_LEN])))
        .collect();
    for (byte, &s) in secret.iter().enumerate() {
        coefficients[0] = s;
        OsRng.fill_bytes(&mut coefficients[1..]);
        for (x, y) in &mut out {
            // Horner's rule.
            let mut acc = 0u8;
            for &c in coefficients.iter().rev() {
                acc = mul(acc, *x) ^ c;
            }
            y[byte] = acc;
        }
    }
    out
}

/// Lagrange interpolation at 0 of points with distinct non-zero x.
pub(super) fn combine_bytes(points: &[(u8, &[u8; SECRET_LEN])]) -> Secret32 {
    Secret32::init_with(|secret| {
        for (i, (xi, yi)) in points.iter().enumerate() {
            // l_i(0) = prod_{j != i} x_j / (x_j - x_i); subtraction is xor.
            let mut basis = 1u8;
            for (j, (xj, _)) in points.iter().enumerate() {
                if i != j {
                    basis = mul(basis, mul(*xj, inv(*xj ^ *xi)));
                }
            }
            for (out, y) in secret.iter_mut().zip(yi.iter()) {
                *out ^= mul(basis, *y);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_arithmetic() {
        // Known products in the AES field (FIPS 197, section 4.2).
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
    }
}
