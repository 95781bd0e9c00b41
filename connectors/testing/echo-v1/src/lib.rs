//! TEST FIXTURE `echo@1.0.0`; see `connectors/testing/echo-shared/echo.rs`.
include!("../../echo-shared/echo.rs");
