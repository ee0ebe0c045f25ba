//! How results are shown: tables for people, JSON for programs. Commands decide what to
//! print; these modules decide how it looks.

pub(crate) mod keys;
