//! The console's pages and forms. Lists filter and page here; every change goes through
//! `administration` (the admin API's functions).

use std::collections::BTreeMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::{admin, check_csrf, failure, page, Admin};
use crate::administration;
use crate::app::App;
use crate::authorization::Holder;
use crate::clients::{AuthMethod, Client, ClientKind, NewClient, SecretChoice};
use crate::endpoints::admin::{blocking, AdminError};
use crate::endpoints::pages::see_other;
use crate::store::audit::AuditQuery;
use crate::users::NewUser;
use crate::views::console::{
    Action, AuditPage, AuditRow, ConfirmPage, DetailPage, Field, FormPage, KeyView, KeysPage,
    ListPage, MessagePage, OverviewPage, Pager, Row,
};
use crate::views::format_time;

const PER_PAGE: usize = 20;

/// A posted form, keeping repeated fields (checkboxes).
struct Posted(Vec<(String, String)>);

impl Posted {
    fn parse(body: &[u8]) -> Posted {
        Posted(url::form_urlencoded::parse(body).into_owned().collect())
    }
    fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split([' ', ',', '\n', '\r', '\t'])
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    }
    fn csrf(&self) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v.clone())
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<usize>,
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "deleted" => "Deleted.",
        "saved" => "Saved.",
        "created" => "Created.",
        _ => return None,
    };
    Some(text.into())
}

fn pager(path: &str, query: &str, page: usize, total: usize) -> Pager {
    let pages = total.div_ceil(PER_PAGE).max(1);
    let link = |p: usize| {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("q", query)
            .append_pair("page", &p.to_string())
            .finish();
        format!("{path}?{q}")
    };
    Pager {
        page,
        pages,
        prev: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        total,
    }
}

fn paged<T>(items: Vec<T>, page: usize) -> Vec<T> {
    items
        .into_iter()
        .skip((page.max(1) - 1) * PER_PAGE)
        .take(PER_PAGE)
        .collect()
}

fn message(
    admin: &Admin,
    title: &str,
    text: String,
    secret: Option<(String, String)>,
    back: &str,
) -> HttpResponse {
    let body = MessagePage {
        shell: admin.shell("", None),
        title: title.into(),
        message: text,
        secret,
        back: back.into(),
        error: false,
    };
    page(StatusCode::OK, body.render())
}

fn text_field(name: &str, label: &str, value: &str, hint: &str) -> Field {
    Field {
        name: name.into(),
        label: label.into(),
        kind: "text",
        value: value.into(),
        hint: hint.into(),
        options: vec![],
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG; labels escaped.
fn bar_chart(title: &str, bars: &[(String, usize)]) -> String {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let height = 24 * bars.len().max(1) + 8;
    let mut svg = format!(
        r#"<svg role="img" aria-label="{}" viewBox="0 0 560 {height}" width="100%" style="max-width:560px">"#,
        escape(title)
    );
    if bars.is_empty() {
        svg.push_str(r#"<text x="4" y="18">No events yet.</text>"#);
    }
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 4 + i * 24;
        let width = 300 * value / max;
        let short: String = label.chars().take(28).collect();
        svg.push_str(&format!(
            r##"<text x="0" y="{}">{}</text><rect x="200" y="{y}" width="{}" height="16" rx="3" fill="#2f54d6"/><text x="{}" y="{}">{value}</text>"##,
            y + 12,
            escape(&short),
            width.max(1),
            206 + width,
            y + 12
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// Hourly columns for the last 24 hours, oldest first.
fn hourly_chart(title: &str, series: &[(&str, &str, Vec<usize>)]) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = format!(
        r#"<svg role="img" aria-label="{}" viewBox="0 0 560 150" width="100%" style="max-width:560px">"#,
        escape(title)
    );
    let per = series.len().max(1);
    for (s, (_, colour, values)) in series.iter().enumerate() {
        for (hour, value) in values.iter().enumerate() {
            let h = 110 * value / max;
            let x = 10 + hour * 22 + s * (20 / per);
            svg.push_str(&format!(
                r#"<rect x="{x}" y="{}" width="{}" height="{}" fill="{colour}"><title>{value}</title></rect>"#,
                120 - h,
                (20 / per).max(2),
                h
            ));
        }
    }
    svg.push_str(r#"<text x="10" y="140">24 h ago</text><text x="500" y="140">now</text>"#);
    for (s, (name, colour, _)) in series.iter().enumerate() {
        let x = 150 + s * 140;
        svg.push_str(&format!(
            r#"<rect x="{x}" y="131" width="10" height="10" fill="{colour}"/><text x="{}" y="140">{}</text>"#,
            x + 14,
            escape(name)
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// `GET /admin`: activity from the audit log, key states, readiness.
pub async fn overview(session: Session, app: web::Data<App>) -> HttpResponse {
    let admin = match admin(&app, &session, "/admin").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = app.now();
    let since = now - 86_400;
    let events = blocking(&app, move |app| {
        let mut all = Vec::new();
        for kind in ["token_issued", "login_succeeded", "login_failed"] {
            all.extend(app.store().query_audit_events(&AuditQuery {
                kind: Some(kind.into()),
                since: Some(since),
                limit: 10_000,
                ..AuditQuery::default()
            })?);
        }
        Ok(all)
    })
    .await;
    let events = match events {
        Ok(events) => events,
        Err(e) => return failure(&admin, e, "/admin"),
    };
    let mut counts = Vec::new();
    let mut hourly: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (kind, label) in [
        ("token_issued", "Tokens issued"),
        ("login_succeeded", "Sign-ins"),
        ("login_failed", "Failed sign-ins"),
    ] {
        let of_kind: Vec<_> = events.iter().filter(|e| e.kind == kind).collect();
        let hour = of_kind.iter().filter(|e| e.at > now - 3600).count();
        counts.push((label.to_string(), hour, of_kind.len()));
        let mut buckets = vec![0usize; 24];
        for e in &of_kind {
            let age = usize::try_from((now - e.at).max(0) / 3600)
                .unwrap_or(0)
                .min(23);
            if let Some(b) = buckets.get_mut(23 - age) {
                *b += 1;
            }
        }
        hourly.insert(kind, buckets);
    }
    let mut by_grant: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_client: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "token_issued") {
        let grant = e
            .details
            .get("grant_type")
            .and_then(|g| g.as_str())
            .unwrap_or("?");
        *by_grant.entry(grant.to_string()).or_default() += 1;
        *by_client
            .entry(e.client_id.clone().unwrap_or_default())
            .or_default() += 1;
    }
    let top = |map: BTreeMap<String, usize>| {
        let mut v: Vec<(String, usize)> = map.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(10);
        v
    };
    let mut failures_by_client: BTreeMap<String, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.kind == "login_failed") {
        let name = e
            .details
            .get("username")
            .and_then(|u| u.as_str())
            .unwrap_or("?");
        *failures_by_client.entry(name.to_string()).or_default() += 1;
    }
    let take = |k: &str| hourly.get(k).cloned().unwrap_or_default();
    let charts = vec![
        (
            "Tokens, sign-ins and failures per hour, last 24 hours".to_string(),
            hourly_chart(
                "Tokens, sign-ins and failures per hour",
                &[
                    ("sign-ins", "#166b3a", take("login_succeeded")),
                    ("failures", "#b42318", take("login_failed")),
                    ("tokens", "#2f54d6", take("token_issued")),
                ],
            ),
        ),
        (
            "Tokens issued per grant, last day".to_string(),
            bar_chart("Tokens issued per grant", &top(by_grant)),
        ),
        (
            "Tokens issued per client, last day".to_string(),
            bar_chart("Tokens issued per client", &top(by_client)),
        ),
        (
            "Failed sign-ins per username, last day".to_string(),
            bar_chart("Failed sign-ins per username", &top(failures_by_client)),
        ),
    ];
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for k in app.keyring().current().records.iter() {
        *keys.entry(k.state.clone()).or_default() += 1;
    }
    let database = {
        let store = app.store().clone();
        match store.run(|s| s.ping()).await {
            Ok(()) => (true, store.backend().product_name().to_string()),
            Err(e) => (false, e.to_string()),
        }
    };
    let mut readiness = vec![("Database".to_string(), database.0, database.1)];
    match app.redis() {
        Some(link) => match link.ping().await {
            Ok(()) => readiness.push(("Redis".into(), true, "sessions, deny list, limits".into())),
            Err(e) => readiness.push(("Redis".into(), false, e.to_string())),
        },
        None => readiness.push(("Redis".into(), true, "not configured (in-process)".into())),
    }
    let body = OverviewPage {
        shell: admin.shell("overview", None),
        charts,
        counts,
        keys: keys.into_iter().collect(),
        readiness,
    };
    page(StatusCode::OK, body.render())
}

/// `GET /admin/clients`.
pub async fn clients(
    query: web::Query<ListQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let admin = match admin(&app, &session, "/admin/clients").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let all = match blocking(&app, |app| Ok(app.clients().list()?)).await {
        Ok(all) => all,
        Err(e) => return failure(&admin, e, "/admin"),
    };
    let q = query.q.clone().unwrap_or_default();
    let needle = q.to_lowercase();
    let found: Vec<_> = all
        .into_iter()
        .filter(|c| {
            needle.is_empty()
                || c.id.to_lowercase().contains(&needle)
                || c.name.to_lowercase().contains(&needle)
        })
        .collect();
    let total = found.len();
    let page_no = query.page.unwrap_or(1).max(1);
    let rows = paged(found, page_no)
        .into_iter()
        .map(|c| Row {
            link: Some(format!("/admin/clients/{}", urlencode(&c.id))),
            cells: vec![
                c.id.clone(),
                c.name.clone(),
                c.grant_types
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                c.auth_method.as_str().to_string(),
                format!("{:?}", c.kind).to_lowercase(),
            ],
        })
        .collect();
    let body = ListPage {
        shell: admin.shell("clients", notice(query.done.as_deref())),
        title: "Clients".into(),
        search_action: "/admin/clients".into(),
        headers: ["Client ID", "Name", "Grant types", "Authentication", "Kind"]
            .map(String::from)
            .to_vec(),
        rows,
        pager: pager("/admin/clients", &q, page_no, total),
        query: q,
        create_href: Some(("/admin/clients/new".into(), "New client".into())),
    };
    page(StatusCode::OK, body.render())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const GRANTS: [(&str, &str); 5] = [
    ("authorization_code", "Authorization code (browser sign-in)"),
    ("refresh_token", "Refresh token"),
    (
        "client_credentials",
        "Client credentials (machine to machine)",
    ),
    (
        "urn:ietf:params:oauth:grant-type:device_code",
        "Device code",
    ),
    (
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "Token exchange",
    ),
];

fn client_fields(form: Option<&Posted>) -> Vec<Field> {
    let value = |name: &str| form.map(|f| f.get(name)).unwrap_or_default();
    let chosen = form.map(|f| f.all("grant_types")).unwrap_or_default();
    let kind = form.map_or("confidential".to_string(), |f| f.get("kind"));
    vec![
        text_field(
            "client_id",
            "Client ID",
            &value("client_id"),
            "Letters, digits and - . _ : / (as the apps will send it).",
        ),
        text_field(
            "client_name",
            "Name",
            &value("client_name"),
            "Shown to people on the consent page.",
        ),
        Field {
            name: "kind".into(),
            label: "Type".into(),
            kind: "select",
            value: String::new(),
            hint: "A public client (a browser or mobile app) has no secret and must use PKCE."
                .into(),
            options: vec![
                (
                    "confidential".into(),
                    "Confidential (gets a secret)".into(),
                    kind != "public",
                ),
                (
                    "public".into(),
                    "Public (no secret)".into(),
                    kind == "public",
                ),
            ],
        },
        Field {
            name: "grant_types".into(),
            label: "Grant types".into(),
            kind: "checks",
            value: String::new(),
            hint: String::new(),
            options: GRANTS
                .iter()
                .map(|(v, l)| (v.to_string(), l.to_string(), chosen.iter().any(|c| c == v)))
                .collect(),
        },
        text_field(
            "scope",
            "Scopes",
            &value("scope"),
            "Space-separated, e.g. openid profile offline_access models:read.",
        ),
        text_field(
            "redirect_uris",
            "Redirect URIs",
            &value("redirect_uris"),
            "Space-separated; needed for the authorization code grant.",
        ),
        text_field(
            "audiences",
            "API audiences",
            &value("audiences"),
            "Resource indicators this client may get tokens for; the first is the default.",
        ),
        text_field(
            "roles",
            "Roles",
            &value("roles"),
            "The client's own roles (for client credentials).",
        ),
    ]
}

fn client_form(admin: &Admin, form: Option<&Posted>, error: Option<String>) -> HttpResponse {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = FormPage {
        shell: admin.shell("clients", None),
        title: "New client".into(),
        action: "/admin/clients".into(),
        fields: client_fields(form),
        submit: "Create client".into(),
        error,
        cancel: "/admin/clients".into(),
    };
    page(status, body.render())
}

pub async fn new_client(session: Session, app: web::Data<App>) -> HttpResponse {
    match admin(&app, &session, "/admin/clients/new").await {
        Ok(admin) => client_form(&admin, None, None),
        Err(r) => r,
    }
}

/// `POST /admin/clients`: the secret is shown once.
pub async fn create_client(
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/clients").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let secret = match administration::secret_choice(form.get("kind") == "public", None) {
        Ok(s) => s,
        Err(e) => return client_form(&admin, Some(&form), Some(e.to_string())),
    };
    let new = NewClient {
        id: form.get("client_id"),
        name: form.get("client_name"),
        secret,
        auth_method: None,
        grant_types: form.all("grant_types"),
        scopes: form.words("scope"),
        audiences: form.words("audiences"),
        redirect_uris: form.words("redirect_uris"),
        post_logout_redirect_uris: vec![],
        roles: form.words("roles"),
        jwks: None,
        id_token_signed_response_alg: None,
        introspection_audiences: vec![],
        require_pushed_authorization_requests: false,
        dpop_bound_access_tokens: false,
    };
    let caller = admin.caller.clone();
    match blocking(&app, move |app| {
        administration::create_client(app, &caller, &new)
    })
    .await
    {
        Ok(created) => {
            let id = created.client.id.clone();
            message(
                &admin,
                "Client created",
                format!("The client {id} is registered."),
                created
                    .client_secret
                    .map(|s| ("Client secret".to_string(), s)),
                &format!("/admin/clients/{}", urlencode(&id)),
            )
        }
        Err(e @ (AdminError::Invalid { .. } | AdminError::Conflict(_))) => {
            client_form(&admin, Some(&form), Some(e.to_string()))
        }
        Err(e) => failure(&admin, e, "/admin/clients"),
    }
}

/// `GET /admin/clients/{id}`.
/// The client page's links to its edit form and its secret rotation (for those that apply).
fn client_links(c: &Client) -> Vec<(String, String, String)> {
    let mut links = Vec::new();
    if c.kind == ClientKind::Static && c.id != super::CLIENT_ID {
        links.push((
            format!("/admin/clients/{}/edit", urlencode(&c.id)),
            "Edit".to_string(),
            "edit".to_string(),
        ));
    }
    if c.auth_method.is_secret_based() {
        links.push((
            format!("/admin/clients/{}/secret", urlencode(&c.id)),
            "Rotate secret…".to_string(),
            "rotate-secret".to_string(),
        ));
    }
    links
}

#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn client(
    id: web::Path<String>,
    query: web::Query<DoneQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let id = id.into_inner();
    let admin = match admin(
        &app,
        &session,
        &format!("/admin/clients/{}", urlencode(&id)),
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let wanted = id.clone();
    let found = blocking(&app, move |app| {
        app.store()
            .find_client(&wanted)?
            .ok_or_else(|| AdminError::NotFound(format!("no client {wanted}")))
    })
    .await;
    let c = match found {
        Ok(c) => c,
        Err(e) => return failure(&admin, e, "/admin/clients"),
    };
    let join = |v: &[String]| {
        if v.is_empty() {
            "—".to_string()
        } else {
            v.join(" ")
        }
    };
    let body = DetailPage {
        shell: admin.shell("clients", notice(query.done.as_deref())),
        title: c.name.clone(),
        facts: vec![
            ("Client ID".into(), c.id.clone()),
            ("Kind".into(), format!("{:?}", c.kind).to_lowercase()),
            ("Authentication".into(), c.auth_method.as_str().into()),
            (
                "Grant types".into(),
                c.grant_types
                    .iter()
                    .map(|g| g.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("Scopes".into(), join(&c.scopes)),
            ("Redirect URIs".into(), join(&c.redirect_uris)),
            ("Audiences".into(), join(&c.audiences)),
            (
                "Post-logout redirect URIs".into(),
                join(&c.post_logout_redirect_uris),
            ),
            ("Roles".into(), join(&c.roles)),
            ("Created".into(), format_time(c.created_at)),
            ("Updated".into(), format_time(c.updated_at)),
        ],
        actions: vec![],
        forms: vec![],
        links: client_links(&c),
        search: None,
        pager: None,
        back: "/admin/clients".into(),
        danger_link: Some((
            format!("/admin/clients/{}/delete", urlencode(&id)),
            "Delete this client…".into(),
        )),
    };
    page(StatusCode::OK, body.render())
}

/// The edit form's values from a stored client.
fn posted_from_client(c: &Client) -> Posted {
    let mut pairs = vec![
        ("client_name".to_string(), c.name.clone()),
        (
            "token_endpoint_auth_method".to_string(),
            c.auth_method.as_str().to_string(),
        ),
        ("scope".to_string(), c.scopes.join(" ")),
        ("redirect_uris".to_string(), c.redirect_uris.join(" ")),
        (
            "post_logout_redirect_uris".to_string(),
            c.post_logout_redirect_uris.join(" "),
        ),
        ("audiences".to_string(), c.audiences.join(" ")),
        ("roles".to_string(), c.roles.join(" ")),
    ];
    pairs.extend(
        c.grant_types
            .iter()
            .map(|g| ("grant_types".to_string(), g.as_str().to_string())),
    );
    Posted(pairs)
}

fn client_edit_fields(form: &Posted, key_authenticated: bool) -> Vec<Field> {
    let chosen = form.all("grant_types");
    let method = form.get("token_endpoint_auth_method");
    let mut methods = vec![
        (
            "client_secret_basic",
            "Secret, HTTP Basic (client_secret_basic)",
        ),
        (
            "client_secret_post",
            "Secret, in the form (client_secret_post)",
        ),
        ("none", "None: a public client (its secret is removed)"),
    ];
    if key_authenticated {
        methods.push((
            "private_key_jwt",
            "Signed JWT with its keys (private_key_jwt)",
        ));
    }
    vec![
        text_field(
            "client_name",
            "Name",
            &form.get("client_name"),
            "Shown to people on the consent page.",
        ),
        Field {
            name: "token_endpoint_auth_method".into(),
            label: "Authentication".into(),
            kind: "select",
            value: String::new(),
            hint:
                "Moving a public or key-authenticated client to a secret generates one, shown once."
                    .into(),
            options: methods
                .iter()
                .map(|(v, l)| (v.to_string(), l.to_string(), method == *v))
                .collect(),
        },
        Field {
            name: "grant_types".into(),
            label: "Grant types".into(),
            kind: "checks",
            value: String::new(),
            hint: String::new(),
            options: GRANTS
                .iter()
                .map(|(v, l)| (v.to_string(), l.to_string(), chosen.iter().any(|c| c == v)))
                .collect(),
        },
        text_field(
            "scope",
            "Scopes",
            &form.get("scope"),
            "Space-separated. A scope removed here is refused at the next request for it.",
        ),
        text_field(
            "redirect_uris",
            "Redirect URIs",
            &form.get("redirect_uris"),
            "Space-separated. A URI removed here can no longer be used.",
        ),
        text_field(
            "post_logout_redirect_uris",
            "Post-logout redirect URIs",
            &form.get("post_logout_redirect_uris"),
            "Space-separated.",
        ),
        text_field(
            "audiences",
            "API audiences",
            &form.get("audiences"),
            "Resource indicators this client may get tokens for; the first is the default.",
        ),
        text_field(
            "roles",
            "Roles",
            &form.get("roles"),
            "The client's own roles (for client credentials).",
        ),
    ]
}

fn client_edit_form(
    admin: &Admin,
    id: &str,
    form: &Posted,
    key_authenticated: bool,
    error: Option<String>,
) -> HttpResponse {
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = FormPage {
        shell: admin.shell("clients", None),
        title: format!("Edit the client {id}"),
        action: format!("/admin/clients/{}/edit", urlencode(id)),
        fields: client_edit_fields(form, key_authenticated),
        submit: "Save changes".into(),
        error,
        cancel: format!("/admin/clients/{}", urlencode(id)),
    };
    page(status, body.render())
}

async fn stored_client(app: &App, id: &str) -> Result<Client, AdminError> {
    let wanted = id.to_string();
    blocking(app, move |app| {
        app.store()
            .find_client(&wanted)?
            .ok_or_else(|| AdminError::NotFound(format!("no client {wanted}")))
    })
    .await
}

fn console_client_refused(admin: &Admin, id: &str) -> Option<HttpResponse> {
    (id == super::CLIENT_ID).then(|| {
        failure(
            admin,
            crate::endpoints::admin::invalid_field(
                "client_id",
                "the console's own client cannot be changed here",
            ),
            "/admin/clients",
        )
    })
}

/// `GET /admin/clients/{id}/edit`: the form, filled with what is stored.
pub async fn edit_client(
    id: web::Path<String>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let id = id.into_inner();
    let admin = match admin(
        &app,
        &session,
        &format!("/admin/clients/{}/edit", urlencode(&id)),
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Some(r) = console_client_refused(&admin, &id) {
        return r;
    }
    match stored_client(&app, &id).await {
        Ok(c) => client_edit_form(
            &admin,
            &id,
            &posted_from_client(&c),
            c.auth_method == AuthMethod::PrivateKeyJwt,
            None,
        ),
        Err(e) => failure(&admin, e, "/admin/clients"),
    }
}

/// `POST /admin/clients/{id}/edit`: `administration::update_client`; a generated secret (a
/// public client made confidential) is shown once.
pub async fn update_client(
    id: web::Path<String>,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let id = id.into_inner();
    let back = format!("/admin/clients/{}", urlencode(&id));
    let admin = match admin(&app, &session, &back).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if let Some(r) = console_client_refused(&admin, &id) {
        return r;
    }
    let current = match stored_client(&app, &id).await {
        Ok(c) => c,
        Err(e) => return failure(&admin, e, "/admin/clients"),
    };
    let method = form.get("token_endpoint_auth_method");
    // What the form does not show stays as it is.
    let changes = NewClient {
        id: id.clone(),
        name: form.get("client_name"),
        secret: SecretChoice::Generate,
        auth_method: (!method.is_empty()).then_some(method),
        grant_types: form.all("grant_types"),
        scopes: form.words("scope"),
        audiences: form.words("audiences"),
        redirect_uris: form.words("redirect_uris"),
        post_logout_redirect_uris: form.words("post_logout_redirect_uris"),
        roles: form.words("roles"),
        jwks: current.jwks.clone(),
        id_token_signed_response_alg: current
            .id_token_signed_response_alg
            .map(|a| a.as_str().to_string()),
        introspection_audiences: current.introspection_audiences.clone(),
        require_pushed_authorization_requests: current.require_pushed_authorization_requests,
        dpop_bound_access_tokens: current.dpop_bound_access_tokens,
    };
    let changes = NewClient {
        // Keys are kept only for a client that still authenticates with them.
        jwks: changes
            .jwks
            .filter(|_| changes.auth_method.as_deref() == Some("private_key_jwt")),
        ..changes
    };
    let caller = admin.caller.clone();
    let wanted = id.clone();
    match blocking(&app, move |app| {
        administration::update_client(app, &caller, &wanted, &changes)
    })
    .await
    {
        Ok(updated) => match updated.client_secret {
            Some(secret) => message(
                &admin,
                "Client saved",
                format!("The client {id} now authenticates with a secret."),
                Some(("Client secret".to_string(), secret)),
                &back,
            ),
            None => see_other(&format!("{back}?done=saved")),
        },
        Err(e @ AdminError::Invalid { .. }) => client_edit_form(
            &admin,
            &id,
            &form,
            current.auth_method == AuthMethod::PrivateKeyJwt,
            Some(e.to_string()),
        ),
        Err(e) => failure(&admin, e, &back),
    }
}

/// `GET /admin/clients/{id}/secret`: confirm before the old secret stops working.
pub async fn confirm_rotate_secret(
    id: web::Path<String>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let id = id.into_inner();
    let admin = match admin(&app, &session, "/admin/clients").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = ConfirmPage {
        shell: admin.shell("clients", None),
        title: format!("Rotate the secret of {id}?"),
        message: "A new secret is generated and shown once. The current secret stops working at once (on other instances within their poll interval): update the client's configuration right after.".into(),
        action: format!("/admin/clients/{}/secret", urlencode(&id)),
        button: "Rotate secret".into(),
        cancel: format!("/admin/clients/{}", urlencode(&id)),
    };
    page(StatusCode::OK, body.render())
}

/// `POST /admin/clients/{id}/secret`: the new secret, shown once.
pub async fn rotate_secret(
    id: web::Path<String>,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let id = id.into_inner();
    let back = format!("/admin/clients/{}", urlencode(&id));
    let admin = match admin(&app, &session, &back).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    let wanted = id.clone();
    match blocking(&app, move |app| {
        administration::rotate_client_secret(app, &caller, &wanted)
    })
    .await
    {
        Ok(secret) => message(
            &admin,
            "Secret rotated",
            format!("The client {id} has a new secret; the old one no longer works."),
            Some(("Client secret".to_string(), secret)),
            &back,
        ),
        Err(e) => failure(&admin, e, &back),
    }
}

pub async fn confirm_delete_client(
    id: web::Path<String>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let id = id.into_inner();
    let admin = match admin(&app, &session, "/admin/clients").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let body = ConfirmPage {
        shell: admin.shell("clients", None),
        title: format!("Delete the client {id}?"),
        message: "Its consents, authorization codes and refresh tokens are deleted with it, and its access tokens stop working at /introspect and /userinfo. This cannot be undone.".into(),
        action: format!("/admin/clients/{}/delete", urlencode(&id)),
        button: "Delete client".into(),
        cancel: format!("/admin/clients/{}", urlencode(&id)),
    };
    page(StatusCode::OK, body.render())
}

pub async fn delete_client(
    id: web::Path<String>,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/clients").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let id = id.into_inner();
    if id == super::CLIENT_ID {
        return failure(
            &admin,
            crate::endpoints::admin::invalid_field(
                "client_id",
                "the console's own client cannot be deleted here",
            ),
            "/admin/clients",
        );
    }
    let caller = admin.caller.clone();
    match blocking(&app, move |app| {
        administration::delete_client(app, &caller, &id)
    })
    .await
    {
        Ok(()) => see_other("/admin/clients?done=deleted"),
        Err(e) => failure(&admin, e, "/admin/clients"),
    }
}

/// `GET /admin/users`.
pub async fn users(
    query: web::Query<ListQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let admin = match admin(&app, &session, "/admin/users").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let all = match blocking(&app, |app| Ok(app.users().list()?)).await {
        Ok(all) => all,
        Err(e) => return failure(&admin, e, "/admin"),
    };
    let q = query.q.clone().unwrap_or_default();
    let needle = q.to_lowercase();
    let found: Vec<_> = all
        .into_iter()
        .filter(|u| {
            needle.is_empty()
                || u.username.to_lowercase().contains(&needle)
                || u.email.to_lowercase().contains(&needle)
                || u.name.to_lowercase().contains(&needle)
        })
        .collect();
    let total = found.len();
    let page_no = query.page.unwrap_or(1).max(1);
    let rows = paged(found, page_no)
        .into_iter()
        .map(|u| Row {
            link: Some(format!("/admin/users/{}", urlencode(&u.username))),
            cells: vec![
                u.username.clone(),
                if u.disabled {
                    "disabled".into()
                } else {
                    "active".into()
                },
                u.name.clone(),
                u.email.clone(),
                u.roles.join(" "),
            ],
        })
        .collect();
    let body = ListPage {
        shell: admin.shell("users", notice(query.done.as_deref())),
        title: "Users".into(),
        search_action: "/admin/users".into(),
        headers: ["Username", "Status", "Name", "Email", "Roles"]
            .map(String::from)
            .to_vec(),
        rows,
        pager: pager("/admin/users", &q, page_no, total),
        query: q,
        create_href: Some(("/admin/users/new".into(), "New user".into())),
    };
    page(StatusCode::OK, body.render())
}

fn user_form(admin: &Admin, form: Option<&Posted>, error: Option<String>) -> HttpResponse {
    let value = |name: &str| form.map(|f| f.get(name)).unwrap_or_default();
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let body = FormPage {
        shell: admin.shell("users", None),
        title: "New user".into(),
        action: "/admin/users".into(),
        fields: vec![
            text_field(
                "username",
                "Username",
                &value("username"),
                "1 to 64 letters, digits or - . _ @ +",
            ),
            text_field("name", "Name", &value("name"), ""),
            Field {
                kind: "email",
                ..text_field("email", "Email", &value("email"), "")
            },
            text_field(
                "roles",
                "Roles",
                &value("roles"),
                "Space-separated, e.g. user or admin.",
            ),
        ],
        submit: "Create user".into(),
        error,
        cancel: "/admin/users".into(),
    };
    page(status, body.render())
}

pub async fn new_user(session: Session, app: web::Data<App>) -> HttpResponse {
    match admin(&app, &session, "/admin/users/new").await {
        Ok(admin) => user_form(&admin, None, None),
        Err(r) => r,
    }
}

/// `POST /admin/users`: with a temporary password, shown once.
pub async fn create_user(body: web::Bytes, session: Session, app: web::Data<App>) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/users").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(password) = crate::secrets::generate_token() else {
        return failure(
            &admin,
            AdminError::Unavailable("no randomness".into()),
            "/admin/users",
        );
    };
    let password: String = password.chars().take(20).collect();
    let new = NewUser {
        username: form.get("username"),
        email: form.get("email"),
        name: form.get("name"),
        roles: form.words("roles"),
        password: password.clone(),
    };
    let caller = admin.caller.clone();
    match blocking(&app, move |app| administration::create_user(app, &caller, &new)).await {
        Ok(user) => message(
            &admin,
            "User created",
            format!("{} can now sign in with this temporary password; give it to them privately and ask them to change it on their account page.", user.username),
            Some(("Temporary password".into(), password)),
            &format!("/admin/users/{}", urlencode(&user.username)),
        ),
        Err(e @ (AdminError::Invalid { .. } | AdminError::Conflict(_))) => user_form(&admin, Some(&form), Some(e.to_string())),
        Err(e) => failure(&admin, e, "/admin/users"),
    }
}

/// `GET /admin/users/{username}`.
pub async fn user(
    username: web::Path<String>,
    query: web::Query<ListQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let username = username.into_inner();
    let admin = match admin(
        &app,
        &session,
        &format!("/admin/users/{}", urlencode(&username)),
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let wanted = username.clone();
    let found = blocking(&app, move |app| {
        app.store()
            .find_user_by_username(&wanted)?
            .ok_or_else(|| AdminError::NotFound(format!("no user {wanted}")))
    })
    .await;
    let u = match found {
        Ok(u) => u,
        Err(e) => return failure(&admin, e, "/admin/users"),
    };
    let base = format!("/admin/users/{}", urlencode(&u.username));
    let action = |what: &str, label: &str, danger: bool| Action {
        action: format!("{base}/{what}"),
        label: label.into(),
        danger,
        fields: vec![],
    };
    let mut actions = vec![if u.disabled {
        action("enable", "Enable", false)
    } else {
        action("disable", "Disable", true)
    }];
    actions.push(action("unlock", "Unlock sign-in", false));
    actions.push(action("password", "Set a temporary password", false));
    for role in &u.roles {
        actions.push(Action {
            action: format!("{base}/revoke-role"),
            label: format!("Remove role {role}"),
            danger: true,
            fields: vec![("role".into(), role.clone())],
        });
    }
    let roles = app.authorization().list_roles().unwrap_or_default();
    let options = roles
        .iter()
        .filter(|r| !u.roles.contains(&r.name))
        .map(|r| (r.name.clone(), r.name.clone(), false))
        .collect::<Vec<_>>();
    let forms = if options.is_empty() {
        vec![]
    } else {
        vec![(
            "Give a role".to_string(),
            vec![Field {
                name: "role".into(),
                label: "Role".into(),
                kind: "select",
                value: String::new(),
                hint: String::new(),
                options,
            }],
            format!("{base}/grant-role"),
            "Give role".to_string(),
        )]
    };
    let body = DetailPage {
        shell: admin.shell("users", notice(query.done.as_deref())),
        title: u.username.clone(),
        facts: vec![
            ("Name".into(), u.name.clone()),
            ("Email".into(), u.email.clone()),
            (
                "Status".into(),
                if u.disabled {
                    "disabled".into()
                } else {
                    "active".into()
                },
            ),
            (
                "Roles".into(),
                if u.roles.is_empty() {
                    "—".into()
                } else {
                    u.roles.join(" ")
                },
            ),
            ("Subject".into(), u.id.clone()),
            ("Created".into(), format_time(u.created_at)),
        ],
        actions,
        forms,
        links: vec![],
        search: None,
        pager: None,
        back: "/admin/users".into(),
        danger_link: None,
    };
    page(StatusCode::OK, body.render())
}

/// `POST /admin/users/{username}/{action}`: disable, enable, unlock, password, grant-role,
/// revoke-role.
pub async fn user_action(
    path: web::Path<(String, String)>,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let (username, action) = path.into_inner();
    let back = format!("/admin/users/{}", urlencode(&username));
    let admin = match admin(&app, &session, &back).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if action == "disable" && username == admin.user.username {
        return failure(
            &admin,
            crate::endpoints::admin::invalid_field(
                "username",
                "you cannot disable your own account here",
            ),
            &back,
        );
    }
    let caller = admin.caller.clone();
    let role = form.get("role");
    let name = username.clone();
    let outcome = blocking(&app, move |app| match action.as_str() {
        "disable" => administration::set_user_disabled(app, &caller, &name, true).map(|()| None),
        "enable" => administration::set_user_disabled(app, &caller, &name, false).map(|()| None),
        "unlock" => administration::unlock_user(app, &caller, &name).map(|()| None),
        "password" => administration::set_temporary_password(app, &caller, &name).map(Some),
        "grant-role" | "revoke-role" => administration::change_role_holder(
            app,
            &caller,
            &role,
            &Holder::User(name.clone()),
            action == "grant-role",
        )
        .map(|_| None),
        _ => Err(AdminError::NotFound("no such action".into())),
    })
    .await;
    match outcome {
        Ok(None) => see_other(&format!("{back}?done=saved")),
        Ok(Some(password)) => message(
            &admin,
            "Temporary password set",
            format!("Give this password to {username} privately; they can change it on their account page."),
            Some(("Temporary password".into(), password)),
            &back,
        ),
        Err(e) => failure(&admin, e, &back),
    }
}

/// `GET /admin/roles`: roles and API resources.
pub async fn roles(
    query: web::Query<ListQuery>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let listed = blocking(&app, |app| {
        Ok((
            app.authorization().list_roles()?,
            app.authorization().list_resources()?,
        ))
    })
    .await;
    let (roles, resources) = match listed {
        Ok(l) => l,
        Err(e) => return failure(&admin, e, "/admin"),
    };
    // Search by name, description, scope or audience; the roles in pages like the other lists.
    let q = query.q.clone().unwrap_or_default();
    let needle = q.to_lowercase();
    let hit = |texts: &[&str], scopes: &[String]| {
        needle.is_empty()
            || texts.iter().any(|t| t.to_lowercase().contains(&needle))
            || scopes.iter().any(|s| s.to_lowercase().contains(&needle))
    };
    let roles: Vec<_> = roles
        .into_iter()
        .filter(|r| hit(&[&r.name, &r.description], &r.scopes))
        .collect();
    let resources: Vec<_> = resources
        .into_iter()
        .filter(|r| hit(&[&r.audience, &r.name], &r.scopes))
        .collect();
    let total = roles.len();
    let page_no = query.page.unwrap_or(1).max(1);
    let roles = paged(roles, page_no);
    let mut actions = Vec::new();
    let mut forms = Vec::new();
    let mut facts = Vec::new();
    for role in &roles {
        facts.push((
            format!("Role {}", role.name),
            format!("{} — {}", role.scopes.join(" "), role.description),
        ));
        forms.push((
            format!("Role {}", role.name),
            vec![text_field(
                "scopes",
                "Scopes",
                &role.scopes.join(" "),
                "Space-separated.",
            )],
            format!("/admin/roles/{}/scopes", urlencode(&role.name)),
            format!("Save scopes of {}", role.name),
        ));
        actions.push(Action {
            action: format!("/admin/roles/{}/delete", urlencode(&role.name)),
            label: format!("Delete role {}", role.name),
            danger: true,
            fields: vec![],
        });
    }
    for resource in &resources {
        facts.push((
            format!("API {}", resource.audience),
            format!("{} — {}", resource.scopes.join(" "), resource.name),
        ));
        forms.push((
            format!("API {}", resource.audience),
            vec![
                Field {
                    kind: "hidden",
                    ..text_field("audience", "", &resource.audience, "")
                },
                text_field(
                    "scopes",
                    "Scopes",
                    &resource.scopes.join(" "),
                    "Space-separated; none may belong to another API.",
                ),
            ],
            "/admin/resources/scopes".into(),
            format!("Save scopes of {}", resource.audience),
        ));
        actions.push(Action {
            action: "/admin/resources/delete".into(),
            label: format!("Delete API {}", resource.audience),
            danger: true,
            fields: vec![("audience".into(), resource.audience.clone())],
        });
    }
    forms.push((
        "New role".into(),
        vec![
            text_field("name", "Name", "", ""),
            text_field("description", "Description", "", ""),
            text_field("scopes", "Scopes", "", "Space-separated."),
        ],
        "/admin/roles".into(),
        "Create role".into(),
    ));
    forms.push((
        "New API resource".into(),
        vec![
            text_field(
                "audience",
                "Audience",
                "",
                "The API's identifier (an https URL).",
            ),
            text_field("name", "Name", "", ""),
            text_field(
                "scopes",
                "Scopes",
                "",
                "Space-separated, e.g. models:read models:write.",
            ),
        ],
        "/admin/resources".into(),
        "Create API resource".into(),
    ));
    let body = DetailPage {
        shell: admin.shell("roles", notice(query.done.as_deref())),
        title: "Roles and API resources".into(),
        facts,
        actions,
        forms,
        links: vec![],
        search: Some(("/admin/roles".into(), q.clone())),
        pager: Some(pager("/admin/roles", &q, page_no, total)),
        back: "/admin".into(),
        danger_link: None,
    };
    page(StatusCode::OK, body.render())
}

pub async fn create_role(body: web::Bytes, session: Session, app: web::Data<App>) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    let (name, description, scopes) = (
        form.get("name"),
        form.get("description"),
        form.words("scopes"),
    );
    match blocking(&app, move |app| {
        administration::create_role(app, &caller, &name, &description, &scopes)
    })
    .await
    {
        Ok(_) => see_other("/admin/roles?done=created"),
        Err(e) => failure(&admin, e, "/admin/roles"),
    }
}

/// `POST /admin/roles/{name}/{scopes|delete}`.
pub async fn role_action(
    path: web::Path<(String, String)>,
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (name, action) = path.into_inner();
    let caller = admin.caller.clone();
    let scopes = form.words("scopes");
    let outcome = blocking(&app, move |app| match action.as_str() {
        "scopes" => administration::set_role_scopes(app, &caller, &name, &scopes),
        "delete" => administration::delete_role(app, &caller, &name),
        _ => Err(AdminError::NotFound("no such action".into())),
    })
    .await;
    match outcome {
        Ok(()) => see_other("/admin/roles?done=saved"),
        Err(e) => failure(&admin, e, "/admin/roles"),
    }
}

pub async fn create_resource(
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    let (audience, name, scopes) = (form.get("audience"), form.get("name"), form.words("scopes"));
    let outcome = blocking(&app, move |app| {
        let name = (!name.is_empty()).then_some(name.as_str());
        administration::create_resource(app, &caller, &audience, name, &scopes, None, None)
    })
    .await;
    match outcome {
        Ok(_) => see_other("/admin/roles?done=created"),
        Err(e) => failure(&admin, e, "/admin/roles"),
    }
}

/// `POST /admin/resources/scopes`: `administration::set_resource_scopes`.
pub async fn set_resource_scopes(
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    let (audience, scopes) = (form.get("audience"), form.words("scopes"));
    match blocking(&app, move |app| {
        administration::set_resource_scopes(app, &caller, &audience, &scopes)
    })
    .await
    {
        Ok(_) => see_other("/admin/roles?done=saved"),
        Err(e) => failure(&admin, e, "/admin/roles"),
    }
}

pub async fn delete_resource(
    body: web::Bytes,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/roles").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    let audience = form.get("audience");
    match blocking(&app, move |app| {
        administration::delete_resource(app, &caller, &audience)
    })
    .await
    {
        Ok(()) => see_other("/admin/roles?done=deleted"),
        Err(e) => failure(&admin, e, "/admin/roles"),
    }
}

/// `GET /admin/keys`: each key on its timeline.
pub async fn keys(session: Session, app: web::Data<App>) -> HttpResponse {
    let admin = match admin(&app, &session, "/admin/keys").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = app.now();
    let when =
        |t: Option<i64>| t.map_or(("—".to_string(), false), |t| (format_time(t), t <= now));
    let keys = app
        .keyring()
        .current()
        .records
        .iter()
        .map(|k| {
            let created = (format_time(k.created_at), true);
            let active = when(k.activated_at);
            let retired = when(k.retired_at);
            let removed = when(k.remove_after);
            KeyView {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                state: k.state.clone(),
                steps: vec![
                    ("next".into(), created.0, created.1),
                    ("active".into(), active.0, active.1),
                    ("retired".into(), retired.0, retired.1),
                    ("removed".into(), removed.0, removed.1),
                ],
            }
        })
        .collect();
    let body = KeysPage {
        shell: admin.shell("keys", None),
        keys,
    };
    page(StatusCode::OK, body.render())
}

pub async fn rotate_keys(body: web::Bytes, session: Session, app: web::Data<App>) -> HttpResponse {
    let form = Posted::parse(&body);
    if let Some(r) = check_csrf(&session, form.csrf().as_deref()) {
        return r;
    }
    let admin = match admin(&app, &session, "/admin/keys").await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let caller = admin.caller.clone();
    match blocking(&app, move |app| administration::rotate_keys(app, &caller)).await {
        Ok(rotation) if rotation.rotated.is_empty() => message(
            &admin,
            "Nothing to rotate",
            "No key was due to change.".into(),
            None,
            "/admin/keys",
        ),
        Ok(rotation) => message(
            &admin,
            "Keys rotated",
            format!("New active keys for: {}.", rotation.rotated.join(", ")),
            None,
            "/admin/keys",
        ),
        Err(e) => failure(&admin, e, "/admin/keys"),
    }
}

#[derive(Deserialize)]
pub struct AuditFilter {
    kind: Option<String>,
    client_id: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<i64>,
}

/// `YYYY-MM-DDTHH:MM` (a `datetime-local` field, read as UTC) to Unix seconds.
fn parse_local(text: &str) -> Option<i64> {
    let text = text.trim();
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    Some(parsed.and_utc().timestamp())
}

const AUDIT_KINDS: [&str; 16] = [
    "admin_change",
    "console_signed_in",
    "console_refused",
    "consent_given",
    "consent_denied",
    "consent_revoked",
    "key_rotated",
    "login_failed",
    "login_succeeded",
    "login_throttled",
    "password_changed",
    "password_change_failed",
    "session_signed_out",
    "token_exchanged",
    "token_issued",
    "token_revoked",
];

/// `GET /admin/audit`: newest first, 50 a page, filtered.
pub async fn audit(
    request: HttpRequest,
    query: web::Query<AuditFilter>,
    session: Session,
    app: web::Data<App>,
) -> HttpResponse {
    let return_to = format!("/admin/audit?{}", request.query_string());
    let admin = match admin(&app, &session, &return_to).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let filter = query.into_inner();
    let nonempty = |v: &Option<String>| {
        v.as_ref()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let (since_text, until_text) = (
        filter.since.clone().unwrap_or_default(),
        filter.until.clone().unwrap_or_default(),
    );
    let since = nonempty(&filter.since).map(|t| parse_local(&t));
    let until = nonempty(&filter.until).map(|t| parse_local(&t));
    if matches!(since, Some(None)) || matches!(until, Some(None)) {
        return failure(
            &admin,
            crate::endpoints::admin::invalid_field("since", "give times as YYYY-MM-DDTHH:MM"),
            "/admin/audit",
        );
    }
    let limit = 50;
    let q = AuditQuery {
        kind: nonempty(&filter.kind),
        client_id: nonempty(&filter.client_id),
        subject: nonempty(&filter.subject),
        since: since.flatten(),
        until: until.flatten(),
        before_id: filter.before,
        limit,
    };
    let events = match blocking(&app, move |app| Ok(app.store().query_audit_events(&q)?)).await {
        Ok(events) => events,
        Err(e) => return failure(&admin, e, "/admin"),
    };
    let older = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten()
        .map(|id| {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("kind", filter.kind.as_deref().unwrap_or_default())
                .append_pair("client_id", filter.client_id.as_deref().unwrap_or_default())
                .append_pair("subject", filter.subject.as_deref().unwrap_or_default())
                .append_pair("since", &since_text)
                .append_pair("until", &until_text)
                .append_pair("before", &id.to_string())
                .finish();
            format!("/admin/audit?{q}")
        });
    let rows = events
        .into_iter()
        .map(|e| AuditRow {
            id: e.id,
            at: format_time(e.at),
            kind: e.kind,
            client_id: e.client_id.unwrap_or_default(),
            subject: e.subject.unwrap_or_default(),
            details: serde_json::to_string_pretty(&e.details).unwrap_or_default(),
        })
        .collect();
    let body = AuditPage {
        shell: admin.shell("audit", None),
        kind: filter.kind.unwrap_or_default(),
        client_id: filter.client_id.unwrap_or_default(),
        subject: filter.subject.unwrap_or_default(),
        since: since_text,
        until: until_text,
        rows,
        older,
        kinds: AUDIT_KINDS.iter().map(|k| k.to_string()).collect(),
    };
    page(StatusCode::OK, body.render())
}
