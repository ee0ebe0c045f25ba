//! The keystore's audit log: appending events, and verifying the chain against the
//! anchor sealed in the keystore.

use std::io;

use super::Keystore;
use crate::audit::{self, AuditEvent, AuditLog, AuditOp, AuditSummary, Outcome};
use crate::error::AuditError;
use crate::lock;

impl Keystore {
    /// Appends an event to the audit log (for operations that change no key, such as
    /// `export-public`, or that other modules perform, such as backups).
    ///
    /// # Errors
    ///
    /// Lock or I/O errors.
    pub fn log(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let _lock = lock::acquire(&self.layout)?;
        let path = self.layout.audit_log();
        AuditLog::new(path.clone())
            .record(event)
            .map_err(|source| AuditError::Io { path, source })
    }

    /// Verifies the audit log: its chain, and that the line of the keystore's last change
    /// (sealed in the keystore as its anchor) is in it unchanged. Logs the verification.
    ///
    /// # Errors
    ///
    /// [`AuditError::Broken`] or [`AuditError::AnchorMissing`]; I/O.
    pub fn verify_audit(&mut self) -> Result<AuditSummary, AuditError> {
        let path = self.layout.audit_log();
        if let Err(e) = self.reload() {
            return Err(AuditError::Io {
                path: self.layout.keystore(),
                source: io::Error::other(e.to_string()),
            });
        }
        let result = audit::verify_with_anchor(&path, self.ring.body.audit_anchor.as_deref());
        let event = match &result {
            Ok(summary) => AuditEvent::new(AuditOp::AuditVerify)
                .with_detail(format!("{} lines intact", summary.lines)),
            Err(e) => AuditEvent::new(AuditOp::AuditVerify)
                .with_outcome(Outcome::Failed)
                .with_detail(e.to_string()),
        };
        self.log(&event)?;
        result
    }
}
