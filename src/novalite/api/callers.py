"""Who asks, in the domain's terms: the Requester of an API request."""

from __future__ import annotations

from novalite.api.wsgi import ApiRequest
from novalite.domain.servers import Requester


def requester(req: ApiRequest) -> Requester:
    """The caller of ``req`` with its request id (the x-openstack-request-id the response carries), which
    the domain records with the instance actions the request starts.

    Admin is decided by the ``context_is_admin`` rule, as Nova's RequestContext does, so a policy file
    that redefines it changes who sees every project's servers.
    """
    context = req.context
    return Requester(user_id=context.user_id, project_id=context.project_id,
                     is_admin=req.app.enforcer.allows(context, "context_is_admin"), request_id=req.request_id)
