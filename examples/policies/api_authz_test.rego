# Tests for api_authz.rego, in OPA's test style (`opa test` runs them; so does Warden's suite).
package api.authz

import future.keywords.if

viewer := {"subject": "v", "tenant_id": "acme", "roles": ["viewer"]}

admin := {"subject": "a", "tenant_id": "acme", "roles": ["admin"]}

req(method, path) := {"method": method, "path": path}

test_viewer_reads if {
	allow with input as {"token": viewer, "request": req("GET", "/api/v1/agents"), "resource": {"tenant_id": null}}
}

test_viewer_cannot_delete if {
	not allow with input as {"token": viewer, "request": req("DELETE", "/api/v1/agents/1"), "resource": {"tenant_id": null}}
}

test_admin_deletes if {
	allow with input as {"token": admin, "request": req("DELETE", "/api/v1/agents/1"), "resource": {"tenant_id": null}}
}

test_admin_paths_need_admin if {
	not allow with input as {"token": viewer, "request": req("GET", "/api/v1/admin/users"), "resource": {"tenant_id": null}}
	allow with input as {"token": admin, "request": req("GET", "/api/v1/admin/users"), "resource": {"tenant_id": null}}
}

test_cross_tenant_denied_with_a_reason if {
	not allow with input as {"token": admin, "request": req("GET", "/api/v1/tenants/globex/agents"), "resource": {"tenant_id": "globex"}}
	count(reasons) == 1 with input as {"token": admin, "request": req("GET", "/api/v1/tenants/globex/agents"), "resource": {"tenant_id": "globex"}}
}
