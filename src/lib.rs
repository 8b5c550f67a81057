//! makeit3d-bff
