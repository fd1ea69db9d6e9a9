//! The admin console's pages (`templates/console/`).

use askama::Template;

/// What every console page shows around its content.
pub struct Shell {
    pub admin: String,
    pub active: &'static str,
    pub csrf_token: String,
    pub notice: Option<String>,
}

pub struct Row {
    pub cells: Vec<String>,
    pub link: Option<String>,
}

pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub total: usize,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
pub struct OverviewPage {
    pub shell: Shell,
    /// Server-rendered SVG (labels escaped when built).
    pub charts: Vec<(String, String)>,
    pub counts: Vec<(String, usize, usize)>,
    pub keys: Vec<(String, usize)>,
    pub readiness: Vec<(String, bool, String)>,
}

#[derive(Template)]
#[template(path = "console/list.html")]
pub struct ListPage {
    pub shell: Shell,
    pub title: String,
    pub search_action: String,
    pub query: String,
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
    pub pager: Pager,
    pub create_href: Option<(String, String)>,
}

pub struct Field {
    pub name: String,
    pub label: String,
    pub kind: &'static str,
    pub value: String,
    pub hint: String,
    pub options: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "console/form.html")]
pub struct FormPage {
    pub shell: Shell,
    pub title: String,
    pub action: String,
    pub fields: Vec<Field>,
    pub submit: String,
    pub error: Option<String>,
    pub cancel: String,
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct MessagePage {
    pub shell: Shell,
    pub title: String,
    pub message: String,
    /// Shown once, with a copy button (a new client secret, a temporary password).
    pub secret: Option<(String, String)>,
    pub back: String,
    pub error: bool,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct ConfirmPage {
    pub shell: Shell,
    pub title: String,
    pub message: String,
    pub action: String,
    pub button: String,
    pub cancel: String,
}

/// A button posting a form (with the CSRF token) on a detail page.
pub struct Action {
    pub action: String,
    pub label: String,
    pub danger: bool,
    /// Extra hidden fields.
    pub fields: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/detail.html")]
pub struct DetailPage {
    pub shell: Shell,
    pub title: String,
    pub facts: Vec<(String, String)>,
    pub actions: Vec<Action>,
    pub forms: Vec<(String, Vec<Field>, String, String)>,
    /// Links to further pages (href, label, element id): edit, rotate the secret.
    pub links: Vec<(String, String, String)>,
    /// A search box (its action, the query) and pages, on pages that list (roles).
    pub search: Option<(String, String)>,
    pub pager: Option<Pager>,
    pub back: String,
    /// A link to a confirmation page (delete).
    pub danger_link: Option<(String, String)>,
}

pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub steps: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
pub struct KeysPage {
    pub shell: Shell,
    pub keys: Vec<KeyView>,
}

pub struct AuditRow {
    pub id: i64,
    pub at: String,
    pub kind: String,
    pub client_id: String,
    pub subject: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub shell: Shell,
    pub kind: String,
    pub client_id: String,
    pub subject: String,
    pub since: String,
    pub until: String,
    pub rows: Vec<AuditRow>,
    pub older: Option<String>,
    pub kinds: Vec<String>,
}
