//! Pipeline tests: encoder -> shards -> decoder, every loss pattern, every tamper.

use std::error::Error;

use proptest::prelude::*;

use crate::ecies::SecretKey;
use crate::*;

type TestResult = Result<(), Box<dyn Error>>;

const SEG: usize = 64 * 1024;

fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed) | 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn options() -> EncodeOptions {
    EncodeOptions::new("test.bin").with_segment_size(SegmentSize::MIN)
}

/// The test owner's authority root.
fn root() -> AuthorityRoot {
    AuthorityRoot::from_bytes(&[0x5a; 32])
}

/// A fresh file authority key of the test owner.
fn authority() -> Result<AuthorityKey, AuthorityError> {
    AuthorityKey::derive(&root(), &AuthoritySalt::random())
}

fn encode(plain: &[u8], opts: EncodeOptions) -> Result<(Vec<Stripe>, EncodedFile), Box<dyn Error>> {
    Ok(encode_with(plain, opts, &authority()?)?)
}

fn encode_with(
    plain: &[u8],
    opts: EncodeOptions,
    authority: &AuthorityKey,
) -> Result<(Vec<Stripe>, EncodedFile), EncodeError> {
    let mut enc = Encoder::new(plain, opts);
    let stripes = enc.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((stripes, enc.finish(authority.file_authority())?))
}

fn all_shards(stripe: &Stripe) -> StripeShards {
    std::array::from_fn(|i| stripe.shard(i).map(<[u8]>::to_vec))
}

fn decode(
    manifest: &Manifest,
    key: &DataKey,
    stripes: impl IntoIterator<Item = (u64, StripeShards)>,
) -> Result<(Vec<u8>, DecodeReport), DecodeError> {
    let mut out = Vec::new();
    let mut dec = Decoder::new(manifest.clone(), key)?;
    for (i, shards) in stripes {
        dec.push(i, shards, &mut out)?;
    }
    let report = dec.finish(&mut out)?;
    Ok((out, report))
}

/// `err` refuses stripe `stripe` for having three intact shards of the four it needs.
#[track_caller]
fn assert_three_of_four(err: Option<DecodeError>, stripe: u64) {
    assert!(
        matches!(
            err,
            Some(DecodeError::InsufficientShards {
                stripe: s,
                have: 3,
                need: 4
            }) if s == stripe
        ),
        "{err:?}"
    );
}

fn lose(stripe: &Stripe, lost: &[usize]) -> StripeShards {
    let mut s = all_shards(stripe);
    for &i in lost {
        s[i] = None;
    }
    s
}

/// Every set of at most two shard indices out of six: 1 + 6 + 15 = 22 patterns.
fn loss_patterns() -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for a in 0..TOTAL_SHARDS {
        out.push(vec![a]);
        for b in a + 1..TOTAL_SHARDS {
            out.push(vec![a, b]);
        }
    }
    out
}

#[test]
fn interesting_sizes_round_trip_under_every_loss_pattern() -> TestResult {
    let patterns = loss_patterns();
    assert_eq!(patterns.len(), 22);
    for len in [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 12_345] {
        let plain = data(len, len as u8);
        let (stripes, file) = encode(&plain, options())?;
        assert_eq!(stripes.len(), len.div_ceil(SEG).max(1), "len {len}");
        assert_eq!(file.metadata.blake3, *blake3::hash(&plain).as_bytes());
        for lost in &patterns {
            let given = stripes.iter().map(|s| (s.index(), lose(s, lost)));
            let (out, report) = decode(&file.manifest, &file.data_key, given)?;
            assert!(out == plain, "len {len}, lost {lost:?}");
            assert!(report.bad_shards.is_empty());
            assert_eq!(report.metadata.size, len as u64);
        }
    }
    Ok(())
}

#[test]
fn every_three_shard_loss_is_a_typed_error_with_no_output() -> TestResult {
    let plain = data(2 * SEG + 5, 3);
    let (stripes, file) = encode(&plain, options())?;
    let mut patterns = 0;
    for a in 0..TOTAL_SHARDS {
        for b in a + 1..TOTAL_SHARDS {
            for c in b + 1..TOTAL_SHARDS {
                patterns += 1;
                let mut out = Vec::new();
                let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?;
                let err = dec.push(0, lose(&stripes[0], &[a, b, c]), &mut out).err();
                assert_three_of_four(err, 0);
                assert!(out.is_empty());
            }
        }
    }
    assert_eq!(patterns, 20);
    Ok(())
}

#[test]
fn a_corrupt_shard_counts_as_missing_and_is_reported() -> TestResult {
    let plain = data(SEG + 100, 9);
    let (stripes, file) = encode(&plain, options())?;
    // One flipped bit in shard 2 of stripe 1 and one in shard 5: still decodes.
    let mut given: Vec<_> = stripes.iter().map(|s| (s.index(), all_shards(s))).collect();
    if let Some(bytes) = given[1].1[2].as_mut() {
        bytes[7] ^= 0x10;
    }
    if let Some(bytes) = given[1].1[5].as_mut() {
        bytes.pop();
    }
    let (out, report) = decode(&file.manifest, &file.data_key, given.clone())?;
    assert!(out == plain);
    let reported: Vec<_> = report
        .bad_shards
        .iter()
        .map(|b| (b.stripe, b.index))
        .collect();
    assert_eq!(reported, vec![(1, 2), (1, 5)]);
    // A third bad shard in the same stripe: too few intact shards, named.
    if let Some(bytes) = given[1].1[0].as_mut() {
        bytes[0] ^= 1;
    }
    let err = decode(&file.manifest, &file.data_key, given).err();
    assert_three_of_four(err, 1);
    Ok(())
}

/// Every shard of `stripe` verified against its own id.
fn verified_shards(stripe: &Stripe) -> Result<VerifiedStripe, Box<dyn Error>> {
    let mut out: VerifiedStripe = Default::default();
    for (i, id) in stripe.ids().iter().enumerate() {
        let bytes = stripe.shard(i).ok_or("no shard")?.to_vec();
        out[i] = Some(VerifiedShard::check(bytes, id).map_err(|_| "does not verify")?);
    }
    Ok(out)
}

#[test]
fn verified_shards_decode_like_unverified_ones_under_every_loss_pattern() -> TestResult {
    let plain = data(2 * SEG + 77, 21);
    let (stripes, file) = encode(&plain, options())?;
    for lost in loss_patterns() {
        let mut out = Vec::new();
        let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?;
        for s in &stripes {
            let mut shards = verified_shards(s)?;
            for &i in &lost {
                shards[i] = None;
            }
            dec.push_verified(s.index(), shards, &mut out)?;
        }
        let report = dec.finish(&mut out)?;
        assert!(out == plain, "lost {lost:?}");
        assert!(report.bad_shards.is_empty());
    }
    Ok(())
}

#[test]
fn a_shard_verified_against_another_id_counts_as_missing_and_is_reported() -> TestResult {
    let plain = data(SEG + 100, 22);
    let (stripes, file) = encode(&plain, options())?;
    // Shard 1 of stripe 0 in slot 3: it hashes to its own id, not to slot 3's. The
    // decoder compares ids (it does not hash again) and must still refuse it.
    let mut out = Vec::new();
    let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?;
    let mut first = verified_shards(&stripes[0])?;
    first[3] = first[1].clone();
    dec.push_verified(0, first, &mut out)?;
    dec.push_verified(1, verified_shards(&stripes[1])?, &mut out)?;
    let report = dec.finish(&mut out)?;
    assert!(out == plain);
    let reported: Vec<_> = report
        .bad_shards
        .iter()
        .map(|b| (b.stripe, b.index))
        .collect();
    assert_eq!(reported, vec![(0, 3)]);
    // Three slots holding other slots' shards: too few, named, nothing written.
    let mut shards = verified_shards(&stripes[0])?;
    shards[2] = shards[0].clone();
    shards[3] = shards[0].clone();
    shards[4] = shards[0].clone();
    let mut out = Vec::new();
    let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?;
    let err = dec
        .push_verified(0, shards, &mut out)
        .and_then(|()| dec.finish(&mut out).map(|_| ()))
        .err();
    assert_three_of_four(err, 0);
    assert!(out.is_empty());
    Ok(())
}

#[test]
fn a_shard_that_does_not_hash_to_its_id_never_becomes_verified() -> TestResult {
    let (stripes, _) = encode(&data(500, 23), options())?;
    let id = stripes[0].ids()[0];
    let mut bytes = stripes[0].shard(0).ok_or("no shard")?.to_vec();
    assert_eq!(
        VerifiedShard::check(bytes.clone(), &id).map(|v| *v.id()),
        Ok(id)
    );
    bytes[0] ^= 1;
    let back = VerifiedShard::check(bytes.clone(), &id).err();
    assert_eq!(
        back.as_deref(),
        Some(&bytes[..]),
        "the bytes come back unchanged"
    );
    Ok(())
}

#[test]
fn a_range_decoder_takes_verified_shards() -> TestResult {
    let plain = data(3 * SEG + 9, 24);
    let (stripes, file) = encode(&plain, options())?;
    let (start, end) = (SEG as u64 - 5, 2 * SEG as u64 + 3);
    let range = ByteRange::new(start, end - 1, plain.len() as u64)?;
    let mut dec = RangeDecoder::new(file.manifest.clone(), &file.data_key, range)?;
    let mut out = Vec::new();
    for index in dec.stripes() {
        let mut shards = verified_shards(&stripes[index as usize])?;
        shards[0] = None;
        dec.push_verified(index, shards, &mut out)?;
    }
    dec.finish()?;
    assert!(out[..] == plain[start as usize..end as usize]);
    Ok(())
}

#[test]
fn flipping_any_bit_of_a_small_files_shards_is_caught_or_harmless() -> TestResult {
    let plain = data(100, 1);
    let (stripes, file) = encode(&plain, options())?;
    let stripe = &stripes[0];
    for shard in 0..TOTAL_SHARDS {
        for bit in 0..stripe.shard_len() * 8 {
            let mut given = all_shards(stripe);
            if let Some(bytes) = given[shard].as_mut() {
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            let (out, report) = decode(&file.manifest, &file.data_key, [(0, given)])?;
            assert!(out == plain);
            assert_eq!(report.bad_shards.len(), 1);
        }
    }
    Ok(())
}

#[test]
fn swapped_dropped_and_duplicated_segments_are_detected() -> TestResult {
    let plain = data(3 * SEG, 4);
    let (stripes, file) = encode(&plain, options())?;
    // Out of order is refused outright.
    let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?;
    let mut out = Vec::new();
    let err = dec.push(1, all_shards(&stripes[1]), &mut out).err();
    assert!(matches!(
        err,
        Some(DecodeError::OutOfOrder {
            expected: 0,
            got: 1
        })
    ));

    // A manifest that lists the stripes swapped (so every shard matches its id) still
    // fails: the segment counter is authenticated.
    let mut swapped = stripes.clone();
    swapped.swap(0, 1);
    let forged = forge_manifest(&file, swapped.iter().map(|s| *s.ids()).collect())?;
    let given = swapped
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, all_shards(s)));
    let err = decode(&forged, &file.data_key, given).err();
    assert!(
        matches!(err, Some(DecodeError::TamperedSegment { stripe: 0 })),
        "{err:?}"
    );

    // Duplicating stripe 0 in place of stripe 1: caught the same way.
    let dup = [stripes[0].clone(), stripes[0].clone(), stripes[2].clone()];
    let forged = forge_manifest(&file, dup.iter().map(|s| *s.ids()).collect())?;
    let given = dup
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u64, all_shards(s)));
    let err = decode(&forged, &file.data_key, given).err();
    assert!(
        matches!(err, Some(DecodeError::TamperedSegment { stripe: 1 })),
        "{err:?}"
    );

    // Dropping the last stripe: the decoder will not finish.
    let given = stripes[..2].iter().map(|s| (s.index(), all_shards(s)));
    let err = decode(&file.manifest, &file.data_key, given).err();
    assert!(
        matches!(
            err,
            Some(DecodeError::Truncated {
                have: 2,
                expected: 3
            })
        ),
        "{err:?}"
    );
    Ok(())
}

/// Re-serialises a manifest with other shard ids (the sealed metadata kept), as an
/// attacker who controls the manifest could.
fn forge_manifest(
    file: &EncodedFile,
    stripes: Vec<[ShardId; TOTAL_SHARDS]>,
) -> Result<Manifest, Box<dyn std::error::Error>> {
    Manifest::build(
        file.manifest.file_len(),
        file.manifest.segment_size(),
        stripes,
        &file.metadata,
        &file.data_key,
        *file.manifest.authority(),
    )
    .map_err(|_| "sealing the forged manifest's metadata failed".into())
}

#[test]
fn a_truncated_file_with_a_forged_shorter_manifest_fails() -> TestResult {
    // Claim the file ends after its first full segment: the first segment was sealed as
    // "not last", so it cannot open as the last one.
    let plain = data(2 * SEG, 5);
    let (stripes, file) = encode(&plain, options())?;
    let meta = Metadata {
        size: SEG as u64,
        ..file.metadata.clone()
    };
    let forged = Manifest::build(
        SEG as u64,
        SegmentSize::MIN,
        vec![*stripes[0].ids()],
        &meta,
        &file.data_key,
        *file.manifest.authority(),
    )
    .map_err(|_| "sealing the forged manifest's metadata failed")?;
    let err = decode(&forged, &file.data_key, [(0, all_shards(&stripes[0]))]).err();
    assert!(
        matches!(err, Some(DecodeError::TamperedSegment { stripe: 0 })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn flipping_any_bit_of_a_manifest_is_detected() -> TestResult {
    let plain = data(SEG + 1, 6);
    let (stripes, file) = encode(&plain, options())?;
    let bytes = file.manifest.to_bytes();
    assert_eq!(Manifest::from_bytes(&bytes)?, file.manifest);
    for bit in 0..bytes.len() * 8 {
        let mut evil = bytes.clone();
        evil[bit / 8] ^= 1 << (bit % 8);
        // The id no longer matches, which is how a reader who holds the id notices.
        assert_ne!(FileId::of_manifest(&evil), file.file_id);
        // And a reader who does not check the id still never gets wrong bytes.
        let Ok(manifest) = Manifest::from_bytes(&evil) else {
            continue;
        };
        let given = stripes.iter().map(|s| (s.index(), all_shards(s)));
        if let Ok((out, _)) = decode(&manifest, &file.data_key, given) {
            assert!(out == plain, "bit {bit} gave wrong output");
        }
    }
    Ok(())
}

#[test]
fn manifest_parser_rejects_garbage_with_typed_errors() {
    assert_eq!(
        Manifest::from_bytes(&[]),
        Err(ManifestError::Malformed("empty"))
    );
    assert_eq!(
        Manifest::from_bytes(&[1, 0, 0]),
        Err(ManifestError::UnsupportedVersion {
            found: 1,
            supported: 2
        })
    );
    for junk in [
        &[2u8][..],
        &[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[2; 200],
    ] {
        assert!(matches!(
            Manifest::from_bytes(junk),
            Err(ManifestError::Malformed(_))
        ));
    }
}

#[test]
fn a_manifest_with_an_overlong_varint_is_refused() -> TestResult {
    let (_, file) = encode(&data(3 * SEG + 5, 8), options())?;
    let bytes = file.manifest.to_bytes();
    // The body opens with the file length, a varint: the same value written one byte
    // longer (the last byte given a continuation bit and a zero byte after it) decodes
    // to the same manifest, under another id. One manifest has one encoding.
    let end = 1 + bytes[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .ok_or("no varint end")?;
    let mut overlong = bytes[..end].to_vec();
    overlong.extend([bytes[end] | 0x80, 0]);
    overlong.extend(&bytes[end + 1..]);
    assert_eq!(
        Manifest::from_bytes(&overlong),
        Err(ManifestError::Malformed("non-canonical encoding"))
    );
    assert_eq!(Manifest::from_bytes(&bytes)?, file.manifest);
    Ok(())
}

#[test]
fn truncating_a_manifest_at_every_length_is_an_error() -> TestResult {
    let (_, file) = encode(&data(3 * SEG, 7), options())?;
    let bytes = file.manifest.to_bytes();
    for len in 0..bytes.len() {
        assert!(Manifest::from_bytes(&bytes[..len]).is_err(), "len {len}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(Manifest::from_bytes(&longer).is_err());
    Ok(())
}

#[test]
fn two_recipients_open_and_a_third_party_cannot() -> TestResult {
    let (owner, friend, stranger) = (
        SecretKey::generate(),
        SecretKey::generate(),
        SecretKey::generate(),
    );
    let plain = data(SEG + 3, 8);
    let authority = authority()?;
    let (stripes, file) = encode_with(&plain, options(), &authority)?;
    let envelope = KeyEnvelope::seal(
        file.file_id,
        1,
        &file.data_key,
        &[owner.public_key(), friend.public_key(), owner.public_key()],
        &authority,
    )?;
    assert_eq!(envelope.wrapped().len(), 2, "duplicate recipient kept once");
    let wire = envelope.to_bytes();
    let parsed = KeyEnvelope::from_verified_bytes(&wire, &file.manifest.authority().key)?;
    assert_eq!(parsed.file_id(), file.file_id);
    for who in [&owner, &friend] {
        let key = parsed.open([who])?;
        let given = stripes.iter().map(|s| (s.index(), all_shards(s)));
        assert!(decode(&file.manifest, &key, given)?.0 == plain);
    }
    assert!(matches!(
        parsed.open([&stranger]),
        Err(EnvelopeError::NoWrappedKey { tried: 1 })
    ));
    // Several keys: the one that is a recipient wins, wherever it is in the list.
    assert!(parsed.open([&stranger, &friend]).is_ok());
    // A stranger's forged envelope, signed with an authority key of its own, does not
    // verify under the file's authority key; and the key it carries opens nothing.
    let stranger_authority = AuthorityKey::derive(
        &AuthorityRoot::from_bytes(&[0xee; 32]),
        &file.manifest.authority().salt,
    )?;
    let forged = KeyEnvelope::seal(
        file.file_id,
        2,
        &DataKey::generate(),
        &[stranger.public_key()],
        &stranger_authority,
    )?;
    assert!(matches!(
        forged.verify(&file.manifest.authority().key),
        Err(EnvelopeError::BadSignature)
    ));
    let wrong = forged.open([&stranger])?;
    assert!(matches!(
        Decoder::new(file.manifest.clone(), &wrong),
        Err(DecodeError::TamperedMetadata)
    ));
    Ok(())
}

#[test]
fn an_envelope_verifies_only_under_its_files_authority_key() -> TestResult {
    let owner = SecretKey::generate();
    let authority = authority()?;
    let (_, file) = encode_with(b"x", options(), &authority)?;
    let (_, other) = encode(b"y", options())?;
    // The same owner (same root), another file: another salt, another key.
    assert_ne!(file.manifest.authority(), other.manifest.authority());
    let wire = KeyEnvelope::seal(
        file.file_id,
        3,
        &file.data_key,
        &[owner.public_key()],
        &authority,
    )?
    .to_bytes();
    // The envelope names no owner: no public key of the owner, nor the authority key, is
    // in its bytes.
    let needles = [
        owner.public_key().to_compressed().to_vec(),
        authority.public().to_bytes().to_vec(),
    ];
    for needle in needles {
        assert!(!wire.windows(needle.len()).any(|w| w == needle));
    }
    let parsed = KeyEnvelope::from_bytes(&wire)?;
    assert_eq!(parsed.sequence(), 3);
    parsed.verify(&file.manifest.authority().key)?;
    assert!(matches!(
        parsed.verify(&other.manifest.authority().key),
        Err(EnvelopeError::BadSignature)
    ));
    assert!(matches!(
        KeyEnvelope::from_verified_bytes(&wire, &other.manifest.authority().key),
        Err(EnvelopeError::BadSignature)
    ));
    // The owner re-derives the key from the root and the manifest's salt.
    let again = AuthorityKey::derive(&root(), &file.manifest.authority().salt)?;
    assert_eq!(again.public(), file.manifest.authority().key);
    Ok(())
}

#[test]
fn manifest_v2_round_trips_with_its_authority() -> TestResult {
    let authority = authority()?;
    let (_, file) = encode_with(&data(2 * SEG + 9, 12), options(), &authority)?;
    let bytes = file.manifest.to_bytes();
    assert_eq!(bytes[0], 2);
    let parsed = Manifest::from_bytes(&bytes)?;
    assert_eq!(parsed, file.manifest);
    assert_eq!(*parsed.authority(), authority.file_authority());
    // The key and the salt are in the bytes the file id hashes.
    let key = authority.public().to_bytes();
    assert!(bytes.windows(key.len()).any(|w| w == key));
    let salt = authority.file_authority().salt;
    assert!(bytes.windows(32).any(|w| w == salt.as_bytes()));
    // A manifest whose authority key is not a curve point is refused.
    let pos = bytes
        .windows(key.len())
        .position(|w| w == key)
        .ok_or("key not found")?;
    let mut bad = bytes.clone();
    bad[pos] = 0x05;
    assert_eq!(
        Manifest::from_bytes(&bad),
        Err(ManifestError::Malformed("bad authority key"))
    );
    Ok(())
}

#[test]
fn flipping_any_bit_of_an_envelope_is_detected() -> TestResult {
    let owner = SecretKey::generate();
    let authority = authority()?;
    let (_, file) = encode_with(b"x", options(), &authority)?;
    let key = file.manifest.authority().key;
    let wire = KeyEnvelope::seal(
        file.file_id,
        7,
        &file.data_key,
        &[owner.public_key()],
        &authority,
    )?
    .to_bytes();
    KeyEnvelope::from_verified_bytes(&wire, &key)?;
    for bit in 0..wire.len() * 8 {
        let mut evil = wire.clone();
        evil[bit / 8] ^= 1 << (bit % 8);
        assert!(
            KeyEnvelope::from_verified_bytes(&evil, &key).is_err(),
            "bit {bit}"
        );
    }
    for len in 0..wire.len() {
        assert!(KeyEnvelope::from_bytes(&wire[..len]).is_err(), "len {len}");
    }
    Ok(())
}

#[test]
fn a_flipped_wrapped_key_never_opens() -> TestResult {
    // Bypass the signature (a reader might be handed the wrapped key some other way):
    // the ECIES layer still refuses every flipped bit.
    let owner = SecretKey::generate();
    let key = DataKey::generate();
    let wrapped = ecies::encrypt(&owner.public_key(), key.to_bytes().as_slice());
    for bit in 0..wrapped.len() * 8 {
        let mut evil = wrapped.clone();
        evil[bit / 8] ^= 1 << (bit % 8);
        assert!(ecies::decrypt(&owner, &evil).is_err(), "bit {bit}");
    }
    Ok(())
}

/// A reader that gives this many bytes, then fails.
struct Failing(usize);

impl std::io::Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn encoder_reports_read_errors_and_refuses_to_finish_early() -> TestResult {
    let mut enc = Encoder::new(Failing(3 * SEG), options().with_stripes_in_flight(1));
    assert!(enc.next().is_some_and(|r| r.is_ok()));
    assert!(enc.by_ref().any(|r| matches!(r, Err(EncodeError::Io(_)))));
    assert!(matches!(
        enc.finish(authority()?.file_authority()),
        Err(EncodeError::AlreadyFailed)
    ));

    let plain = data(3 * SEG, 1);
    let mut enc = Encoder::new(&plain[..], options().with_stripes_in_flight(2));
    let _first = enc.next();
    assert!(matches!(
        enc.finish(authority()?.file_authority()),
        Err(EncodeError::StripesPending)
    ));
    Ok(())
}

#[test]
fn a_read_error_while_reading_ahead_comes_after_the_batch_before_it() -> TestResult {
    // With 2 stripes in flight the encoder reads the next batch while it seals the
    // current one: a failure of that read is reported after the current batch's stripes,
    // never instead of them, and nothing follows it.
    // Batch 1: segments 0, 1 (+ segment 2 read ahead); batch 2 fails reading segment 4.
    let mut enc = Encoder::new(Failing(4 * SEG + 10), options().with_stripes_in_flight(2));
    let first: Vec<u64> = enc
        .by_ref()
        .take(2)
        .map(|r| r.map(|s| s.index()))
        .collect::<Result<_, _>>()?;
    assert_eq!(first, [0, 1]);
    assert!(matches!(enc.next(), Some(Err(EncodeError::Io(_)))));
    assert!(enc.next().is_none());
    assert!(matches!(
        enc.finish(authority()?.file_authority()),
        Err(EncodeError::AlreadyFailed)
    ));
    Ok(())
}

#[test]
fn decoding_in_batches_rebuilds_every_stripe_of_any_size() -> TestResult {
    // Several flushes (2 stripes in flight), a short last stripe, and a rebuild in every
    // stripe.
    for len in [5 * SEG + 7, 6 * SEG, 2 * SEG + 1] {
        let plain = data(len, 21);
        let (stripes, file) = encode(&plain, options().with_stripes_in_flight(2))?;
        let mut out = Vec::new();
        let mut dec =
            Decoder::new(file.manifest.clone(), &file.data_key)?.with_stripes_in_flight(2);
        for (i, stripe) in stripes.iter().enumerate() {
            dec.push(i as u64, lose(stripe, &[1, 3]), &mut out)?;
        }
        let report = dec.finish(&mut out)?;
        assert_eq!(out, plain, "length {len}");
        assert!(report.bad_shards.is_empty());
    }
    Ok(())
}

#[test]
fn memory_in_flight_is_bounded_by_the_batch() -> TestResult {
    // The encoder never holds more than `stripes_in_flight` stripes: after the first
    // stripe of a batch is taken the rest of that batch is queued, nothing more.
    let plain = data(20 * SEG, 2);
    let mut enc = Encoder::new(&plain[..], options().with_stripes_in_flight(3));
    let mut taken = 0;
    while let Some(stripe) = enc.next() {
        stripe?;
        taken += 1;
        assert!(
            enc.ready.len() < 3,
            "queued {} after {taken}",
            enc.ready.len()
        );
    }
    assert_eq!(taken, 20);
    Ok(())
}

#[test]
fn single_threaded_and_parallel_encodings_agree() -> TestResult {
    let plain = data(7 * SEG + 99, 11);
    let key = DataKey::generate();
    let authority = authority()?.file_authority();
    let run = |n: usize| -> Result<(Vec<Stripe>, Manifest), EncodeError> {
        let mut enc =
            Encoder::with_key(&plain[..], options().with_stripes_in_flight(n), key.clone());
        let stripes = enc.by_ref().collect::<Result<Vec<_>, _>>()?;
        Ok((stripes, enc.finish(authority)?.manifest))
    };
    assert_eq!(run(1)?, run(4)?);
    Ok(())
}

#[test]
fn frozen_format_vector() -> TestResult {
    // A change to the segment, stripe, manifest, envelope, authority or id format changes
    // these and fails here. Regenerate deliberately with DATAMESH_REGENERATE_VECTORS=1
    // and bump the version (v2: manifest and envelope v2, per-file authority keys).
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Vector {
        key: String,
        plaintext_len: usize,
        authority_root: String,
        authority_salt: String,
        authority_key: String,
        manifest: String,
        file_id: String,
        envelope: String,
        owner_secret: String,
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/format_v2.json");
    let key = DataKey::from_bytes(&[7; 32]);
    let root = AuthorityRoot::from_bytes(&[8; 32]);
    let salt = AuthoritySalt::from_bytes([10; 32]);
    let authority = AuthorityKey::derive(&root, &salt)?;
    let plain = data(SEG + 1000, 42);
    let opts = options().with_mtime(1_700_000_000);
    let mut enc = Encoder::with_key(&plain[..], opts, key.clone());
    let stripes = enc.by_ref().collect::<Result<Vec<_>, _>>()?;
    let file = enc.finish(authority.file_authority())?;
    if std::env::var_os("DATAMESH_REGENERATE_VECTORS").is_some() {
        let owner = SecretKey::from_bytes(&[9; 32])?;
        let envelope = KeyEnvelope::seal(file.file_id, 1, &key, &[owner.public_key()], &authority)?;
        let v = Vector {
            key: hex::encode(*key.to_bytes()),
            plaintext_len: plain.len(),
            authority_root: hex::encode([8u8; 32]),
            authority_salt: hex::encode(salt.as_bytes()),
            authority_key: hex::encode(authority.public().to_bytes()),
            manifest: hex::encode(file.manifest.to_bytes()),
            file_id: file.file_id.to_string(),
            envelope: hex::encode(envelope.to_bytes()),
            owner_secret: hex::encode(*owner.to_bytes()),
        };
        std::fs::write(path, serde_json::to_string_pretty(&v)? + "\n")?;
    }
    let frozen: Vector = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    assert_eq!(
        frozen.authority_key,
        hex::encode(authority.public().to_bytes())
    );
    assert_eq!(frozen.manifest, hex::encode(file.manifest.to_bytes()));
    assert_eq!(frozen.file_id, file.file_id.to_string());

    // The frozen manifest names every shard by its hash, so equal manifests mean equal
    // shard bytes; those shards still decode through the frozen manifest and envelope,
    // which verifies under the manifest's authority key.
    let manifest = Manifest::from_bytes(&hex::decode(&frozen.manifest)?)?;
    let envelope = KeyEnvelope::from_verified_bytes(
        &hex::decode(&frozen.envelope)?,
        &manifest.authority().key,
    )?;
    let owner_bytes: [u8; 32] = hex::decode(&frozen.owner_secret)?.as_slice().try_into()?;
    let owner = SecretKey::from_bytes(&owner_bytes)?;
    let key = envelope.open([&owner])?;
    let given = stripes.iter().map(|s| (s.index(), all_shards(s)));
    let (out, report) = decode(&manifest, &key, given)?;
    assert!(out == plain);
    assert_eq!(report.metadata.mtime, Some(1_700_000_000));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_four_of_six_rebuild_random_files(
        len in 0usize..(5 * SEG),
        seed in any::<u8>(),
        pattern in 0usize..22,
        in_flight in 1usize..5,
    ) {
        let plain = data(len, seed);
        let (stripes, file) = encode(&plain, options().with_stripes_in_flight(in_flight))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let lost = &loss_patterns()[pattern];
        let given = stripes.iter().map(|s| (s.index(), lose(s, lost)));
        let (out, _) = decode(&file.manifest, &file.data_key, given)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(out == plain);
    }

    #[test]
    fn manifest_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Manifest::from_bytes(&bytes);
        let mut versioned = bytes.clone();
        versioned.insert(0, MANIFEST_VERSION);
        // What parses is what it encodes to: one manifest, one id.
        if let Ok(manifest) = Manifest::from_bytes(&versioned) {
            prop_assert_eq!(manifest.to_bytes(), versioned.clone());
        }
        let _ = KeyEnvelope::from_bytes(&versioned);
    }
}

#[test]
fn shared_shards_are_the_owned_shards_and_hash_to_their_ids() -> TestResult {
    let (stripes, _) = encode(&data(3 * SEG + 1_234, 7), options())?;
    for stripe in stripes {
        let ids = *stripe.ids();
        let owned = stripe.clone().into_shards();
        let shared = stripe.into_shared_shards();
        for i in 0..TOTAL_SHARDS {
            assert_eq!(shared[i].as_ref(), owned[i].as_slice(), "shard {i}");
            assert_eq!(ShardId::of(&shared[i]), ids[i], "shard {i}");
        }
    }
    Ok(())
}

/// An encapsulation made ahead wraps as a fresh wrap does, for every kind of recipient:
/// the recipient opens it, nobody else does, and it is used only for the recipient it was
/// made for (one made for another key is left aside and a fresh agreement made).
#[test]
fn encapsulations_made_ahead_wrap_for_their_recipient_only() -> TestResult {
    let authority = authority()?;
    let dek = DataKey::generate();
    let file = FileId::from_bytes([5; 32]);
    let secrets = [
        FileSecret::Classical(SecretKey::generate()),
        FileSecret::Hybrid(HybridSecretKey::generate()),
        FileSecret::P256(P256SecretKey::generate()),
    ];
    for (i, secret) in secrets.iter().enumerate() {
        let recipient = secret.recipient();
        let other = &secrets[(i + 1) % secrets.len()];
        let ready = recipient.encapsulate().ok_or("no encapsulation")?;
        assert_eq!(ready.recipient(), recipient.key_id());
        // Its key never shows: `Debug` names the recipient only.
        assert_eq!(
            format!("{ready:?}"),
            format!("Encapsulation({})", recipient.key_id().short())
        );
        // Alone, it wraps in `Recipient::wrap`'s format (the same length).
        let wrapped = ready.wrap(dek.to_bytes().as_slice()).ok_or("wrap failed")?;
        assert_eq!(
            wrapped.len(),
            recipient.wrap(dek.to_bytes().as_slice()).len()
        );
        // In an envelope: one made for another recipient is not used for this one.
        let ahead = vec![
            other.recipient().encapsulate().ok_or("no encapsulation")?,
            recipient.encapsulate().ok_or("no encapsulation")?,
        ];
        let envelope = KeyEnvelope::seal_to_with(file, 1, &dek, &[recipient], &authority, ahead)?;
        assert_eq!(envelope.wrapped().len(), 1);
        assert_eq!(envelope.open([secret])?.to_bytes(), dek.to_bytes());
        assert!(envelope.open([other]).is_err());
        let no_one = KeyEnvelope::seal_to_with(
            file,
            1,
            &dek,
            &[secret.recipient()],
            &authority,
            vec![other.recipient().encapsulate().ok_or("no encapsulation")?],
        )?;
        assert_eq!(no_one.open([secret])?.to_bytes(), dek.to_bytes());
        assert!(no_one.open([other]).is_err());
    }
    Ok(())
}

/// The first stripe is opened and written as soon as it is given, the next ones a batch
/// at a time: a reader has the file's first bytes after one segment's work.
#[test]
fn the_first_stripe_is_written_at_once_the_rest_by_batches() -> TestResult {
    let plain = data(5 * SEG + 9, 31);
    let (stripes, file) = encode(&plain, options())?;
    let mut out = Vec::new();
    let mut dec = Decoder::new(file.manifest.clone(), &file.data_key)?.with_stripes_in_flight(3);
    dec.push(0, all_shards(&stripes[0]), &mut out)?;
    assert_eq!(out, plain[..SEG], "the first segment waits for nothing");
    dec.push(1, all_shards(&stripes[1]), &mut out)?;
    dec.push(2, all_shards(&stripes[2]), &mut out)?;
    assert_eq!(out.len(), SEG, "stripes 1 and 2 wait for a batch of three");
    dec.push(3, all_shards(&stripes[3]), &mut out)?;
    assert_eq!(out, plain[..4 * SEG]);
    for (i, stripe) in stripes.iter().enumerate().skip(4) {
        dec.push(i as u64, all_shards(stripe), &mut out)?;
    }
    dec.finish(&mut out)?;
    assert!(out == plain);
    Ok(())
}
