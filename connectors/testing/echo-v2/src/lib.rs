//! TEST FIXTURE `echo@2.0.0`; see `connectors/testing/echo-shared/echo.rs`.
include!("../../echo-shared/echo.rs");
