//! Gives the request its [`RequestDeadline`] and answers 504 `REQUEST_TIMEOUT` when it passes.
//! Upstream calls read the same deadline, so they give up in time to report which backend was
//! slow. (tower-http's `Timeout` answers a bare 408 and tells nothing to what runs below, so this
//! one is ours.)

use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};

use super::stage::{Downstream, Next, Stage};
use crate::{GatewayError, RequestDeadline};

#[derive(Debug, Clone, Copy)]
pub struct EnforceDeadline(pub Duration);

impl Stage for EnforceDeadline {
    async fn run<S: Downstream>(&self, mut request: Request, next: Next<S>) -> Response {
        request.extensions_mut().insert(RequestDeadline(Instant::now() + self.0));
        match tokio::time::timeout(self.0, next.run(request)).await {
            Ok(response) => response,
            Err(_) => GatewayError::RequestTimeout(self.0).into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ErrorCode, PendingError};
    use crate::inbound::stage::testing::{get, ok, run};

    #[tokio::test]
    async fn handlers_see_the_deadline_and_a_slow_one_is_cut_off_with_request_timeout() {
        let budget = Duration::from_millis(50);
        let slow = |request: Request| async move {
            assert!(request.extensions().get::<RequestDeadline>().is_some_and(|d| d.0 > Instant::now()));
            tokio::time::sleep(Duration::from_secs(5)).await;
            ok(request).await
        };
        let started = Instant::now();
        let response = run(EnforceDeadline(budget), slow, get(&[])).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        assert_eq!(response.status(), 504);
        assert_eq!(response.extensions().get::<PendingError>().map(|e| e.0.code()), Some(ErrorCode::RequestTimeout));
    }
}
