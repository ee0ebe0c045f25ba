//! Escrow through the keystore: the drill, the forgotten password, sealed shares, and a
//! lost machine rebuilt from shares and the network copy.

use std::fs;

use super::{TestResult, assert_no_secret_in, fingerprint, mode, new_home, pw, small};
use crate::*;

#[test]
fn escrow_verify_and_recover_through_the_keystore() -> TestResult {
    let (dir, keystore) = new_home()?;
    let seed = keystore.node_identity_seed();
    let shares = keystore.escrow_split(3, 5)?;
    let set = keystore.escrow_verify(&shares[1..4])?;
    assert_eq!(set, shares[0].set());
    let before = fs::read(dir.path().join("keys/keystore"))?;

    // The drill with too few shares, or shares of another keystore: errors, no change.
    assert!(matches!(
        keystore.escrow_verify(&shares[..2]),
        Err(EscrowError::Share(ShareError::NotEnoughShares {
            have: 2,
            need: 3
        }))
    ));
    let (_other_dir, other) = new_home()?;
    let foreign = other.escrow_split(2, 2)?;
    assert!(matches!(
        keystore.escrow_verify(&foreign),
        Err(EscrowError::WrongKeystore { .. })
    ));
    assert!(matches!(
        Keystore::recover(dir.path(), &foreign, &pw("new password"), small()),
        Err(EscrowError::WrongKeystore { .. })
    ));
    assert!(matches!(
        Keystore::recover(dir.path(), &shares[..2], &pw("new password"), small()),
        Err(EscrowError::Share(ShareError::NotEnoughShares { .. }))
    ));
    assert_eq!(fs::read(dir.path().join("keys/keystore"))?, before);

    // Forgotten password: three shares add a slot for a new one; the old one still works.
    let chosen = [shares[4].clone(), shares[0].clone(), shares[2].clone()];
    let recovered = Keystore::recover(dir.path(), &chosen, &pw("new password"), small())?;
    assert_eq!(recovered.node_identity_seed(), seed);
    assert_eq!(recovered.unlocked_slot(), 2);
    let reopened = Keystore::open(dir.path(), &pw("new password"))?;
    assert_eq!(reopened.node_identity_seed(), seed);
    assert_eq!(reopened.unlocked_slot(), 2);
    Keystore::open(dir.path(), &pw("old password"))?;
    let log = fs::read_to_string(dir.path().join("keys/audit.log"))?;
    assert!(log.contains("\"op\":\"recover\""));
    assert!(log.contains("\"op\":\"escrow\""));
    let hex = data_encoding::HEXLOWER.encode(keystore.master().expose());
    assert!(!log.contains(&hex));
    let mut reopened = reopened;
    reopened.verify_audit()?;

    // A new split is a new set; its shares do not mix with the old ones.
    let again = keystore.escrow_split(3, 5)?;
    assert_ne!(again[0].set(), shares[0].set());
    let mixed = [again[0].clone(), again[1].clone(), shares[2].clone()];
    assert!(matches!(
        keystore.escrow_verify(&mixed),
        Err(EscrowError::Share(ShareError::MixedSets { .. }))
    ));
    Ok(())
}

#[test]
fn sealed_shares_open_only_in_the_contacts_home() -> TestResult {
    let (_dir, keystore) = new_home()?;
    let (_cdir, contact) = new_home()?;
    let (_odir, other) = new_home()?;
    let copy = [9u8; 32];
    let shares = keystore.escrow_split_with_copy(2, 3, Some(copy))?;
    let (_, contact_key) = contact.active_file_key()?;
    let sealed = shares[1].seal_to(&contact_key.public_key());
    assert!(sealed.starts_with(SEALED_SHARE_PREFIX));
    // Neither the share value nor the master key is in the sealed text or its bytes.
    assert!(!sealed.contains(&*shares[1].to_text()));
    let opened = contact.open_sealed_share(&sealed)?;
    assert_eq!(*opened.to_bytes(), *shares[1].to_bytes());
    assert_eq!(opened.network_copy(), Some(copy));
    assert!(matches!(
        other.open_sealed_share(&sealed),
        Err(ShareError::NotForThisKey { .. })
    ));
    // A sealed share where a plain one is needed: a clear error.
    assert_eq!(Share::from_text(&sealed).err(), Some(ShareError::Sealed));
    // A changed character: refused.
    let mut damaged = sealed.clone();
    let at = damaged.len() - 3;
    let c = if &damaged[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    damaged.replace_range(at..at + 1, c);
    assert!(contact.open_sealed_share(&damaged).is_err());
    // The opened shares combine with the others.
    keystore.escrow_verify(&[opened, shares[2].clone()])?;
    Ok(())
}

#[test]
fn a_lost_machine_is_rebuilt_from_shares_and_the_network_copy() -> TestResult {
    let (dir, mut keystore) = new_home()?;
    keystore.rotate(FILE_ENCRYPTION)?;
    let seed = keystore.node_identity_seed();
    let copy = keystore.network_copy(b"the catalog")?;
    // The copy holds neither the master key nor a key's secret in the clear.
    assert_no_secret_in(&keystore, &copy);
    let shares = keystore.escrow_split_with_copy(3, 5, Some([7u8; 32]))?;
    assert!(shares.iter().all(|s| s.network_copy() == Some([7u8; 32])));
    // The recovery key from shares is the one the copy is wrapped to.
    assert_eq!(
        Keystore::recovery_key(&shares[2..])?.public_key(),
        keystore.recovery_public_key()
    );
    let target = tempfile::tempdir()?;
    let home = target.path().join("new");

    // Too few shares, another keystore's shares, a damaged copy: errors, nothing written.
    assert!(matches!(
        Keystore::recover_into(&home, &shares[..2], &copy, &pw("new password"), small()),
        Err(EscrowError::Share(ShareError::NotEnoughShares {
            have: 2,
            need: 3
        }))
    ));
    let (_odir, other) = new_home()?;
    let foreign = other.escrow_split(2, 2)?;
    assert!(matches!(
        Keystore::recover_into(&home, &foreign, &copy, &pw("new password"), small()),
        Err(EscrowError::Copy(CopyError::Mac))
    ));
    let bare = fs::read(dir.path().join("keys/keystore"))?;
    assert!(matches!(
        Keystore::recover_into(&home, &foreign, &bare, &pw("new password"), small()),
        Err(EscrowError::WrongKeystore { .. })
    ));
    let mut damaged = copy.clone();
    damaged[copy.len() / 2] ^= 4;
    assert!(matches!(
        Keystore::recover_into(&home, &shares[..3], &damaged, &pw("new password"), small()),
        Err(EscrowError::Copy(CopyError::Mac))
    ));
    assert!(!home.exists());

    // Three shares and the copy: the same keys, a new password, the catalog back.
    let chosen = [shares[4].clone(), shares[1].clone(), shares[3].clone()];
    let (recovered, catalog) =
        Keystore::recover_into(&home, &chosen, &copy, &pw("new password"), small())?;
    assert_eq!(catalog.as_deref(), Some(&b"the catalog"[..]));
    assert_eq!(recovered.node_identity_seed(), seed);
    assert_eq!(fingerprint(&recovered), fingerprint(&keystore));
    let mut reopened = Keystore::open(&home, &pw("new password"))?;
    reopened.verify_audit()?;
    // The old password still opens it too (it was not lost, the machine was).
    Keystore::open(&home, &pw("old password"))?;
    // The shares still work on the rebuilt home, and a second recovery into it is refused.
    reopened.escrow_verify(&shares[..3])?;
    assert!(matches!(
        Keystore::recover_into(&home, &chosen, &copy, &pw("new password"), small()),
        Err(EscrowError::Create(CreateError::AlreadyExists { .. }))
    ));
    assert_eq!(mode(&home.join("keys/keystore"))?, 0o600);

    // A plain keystore file works as well (no catalog).
    let home2 = target.path().join("new2");
    let (_, catalog) =
        Keystore::recover_into(&home2, &chosen, &bare, &pw("new password"), small())?;
    assert!(catalog.is_none());
    Keystore::open(&home2, &pw("new password"))?;
    Ok(())
}
