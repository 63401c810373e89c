//! Image references by the distribution reference grammar.
