//! The virus rule (Điều 4 khoản 6): what clamd found becomes a violation.
