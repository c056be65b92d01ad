# Example authorization policy for Warden (OPA-compatible Rego).
#
# Input (built by the gateway for every protected request):
#   input.token    { subject, tenant_id, roles, scopes, method, claims }
#   input.request  { method, path (canonical), route, params, headers }
#   input.resource { tenant_id }   (the path's tenant, when the route binds tenant_param)
package api.authz

import future.keywords.contains
import future.keywords.if
import future.keywords.in

default allow := false

# Which methods each role may use; admins inherit everything.
methods_for := {
	"viewer": {"GET", "HEAD"},
	"user": {"GET", "HEAD", "POST", "PUT", "PATCH"},
	"admin": {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"},
}

allow if {
	count(reasons) == 0
}

# A helper function: may any of the caller's roles use this method?
method_allowed(method) if {
	some role in input.token.roles
	method in methods_for[role]
}

is_admin if "admin" in input.token.roles

reasons contains msg if {
	not method_allowed(input.request.method)
	msg := sprintf("roles %v may not use %s", [input.token.roles, input.request.method])
}

reasons contains msg if {
	startswith(input.request.path, "/api/v1/admin")
	not is_admin
	msg := sprintf("%s is not an admin (path %s)", [input.token.subject, input.request.path])
}

# Tenant isolation: a resource tenant in the path must be the caller's own.
reasons contains msg if {
	input.resource.tenant_id != null
	input.resource.tenant_id != input.token.tenant_id
	msg := sprintf("tenant %v may not reach tenant %v", [input.token.tenant_id, input.resource.tenant_id])
}
