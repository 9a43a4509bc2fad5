//! The REST API's route table: every route is added here with its method and path, which go
//! both to the axum router and to a list, so that a test can hold the OpenAPI document
//! (`http::openapi`) against the routes the server really has.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::state::AppState;

/// A method and a path pattern in axum's syntax (`/rooms/{roomId}`, `/storage/{*key}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: Method,
    pub path: String,
}

/// Routes being built: the router, and what was put in it.
pub struct Routes {
    router: Router<AppState>,
    table: Vec<Route>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::GET, path, handler)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::POST, path, handler)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PUT, path, handler)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::PATCH, path, handler)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, path: &str, handler: H) -> Self {
        self.add(Method::DELETE, path, handler)
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        self,
        method: Method,
        path: &str,
        handler: H,
    ) -> Self {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        self.method_router(method, path, on(filter, handler))
    }

    /// A route whose handler needs layers of its own (`endpoint` answers `method` only).
    pub fn method_router(
        mut self,
        method: Method,
        path: &str,
        endpoint: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, endpoint);
        self.table.push(Route {
            method,
            path: path.to_owned(),
        });
        self
    }

    /// `other`'s routes below `prefix`.
    pub fn nest(mut self, prefix: &str, other: Routes) -> Self {
        self.router = self.router.nest(prefix, other.router);
        self.table
            .extend(other.table.into_iter().map(|route| Route {
                method: route.method,
                path: format!("{prefix}{}", route.path),
            }));
        self
    }

    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// What was added, in order.
    pub fn table(&self) -> &[Route] {
        &self.table
    }

    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}
