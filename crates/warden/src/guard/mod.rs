//! Content guards: rules over what a request asks for and says. [`models`] allows and denies
//! the requested model; the input and output guards land here next.

pub mod models;
