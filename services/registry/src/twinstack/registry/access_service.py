"""The access API's gRPC surface, served by the registry: thin over :mod:`access`."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from twinstack.api.access.v1 import access_pb2, access_pb2_grpc
from twinstack.common.gatekeeper import current_principal
from twinstack.registry.access import AccessAdmin

SERVICE_NAME = access_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AccessServicer(access_pb2_grpc.AccessServiceServicer):
    def __init__(self, admin: AccessAdmin) -> None:
        self._admin = admin

    async def WhoAmI(
        self, request: access_pb2.WhoAmIRequest, context: Context
    ) -> access_pb2.WhoAmIResponse:
        return self._admin.who_am_i(current_principal())

    async def CheckAccess(
        self, request: access_pb2.CheckAccessRequest, context: Context
    ) -> access_pb2.CheckAccessResponse:
        return self._admin.check(current_principal(), request)

    async def CreateApiKey(
        self, request: access_pb2.CreateApiKeyRequest, context: Context
    ) -> access_pb2.CreateApiKeyResponse:
        return await self._admin.create_api_key(current_principal(), request)

    async def ListApiKeys(
        self, request: access_pb2.ListApiKeysRequest, context: Context
    ) -> access_pb2.ListApiKeysResponse:
        keys = self._admin.list_api_keys(current_principal(), request.include_revoked)
        return access_pb2.ListApiKeysResponse(keys=keys)

    async def RevokeApiKey(
        self, request: access_pb2.RevokeApiKeyRequest, context: Context
    ) -> access_pb2.RevokeApiKeyResponse:
        key = await self._admin.revoke_api_key(current_principal(), request.id)
        return access_pb2.RevokeApiKeyResponse(key=key)

    async def PutRoleBinding(
        self, request: access_pb2.PutRoleBindingRequest, context: Context
    ) -> access_pb2.PutRoleBindingResponse:
        binding = await self._admin.put_binding(current_principal(), request)
        return access_pb2.PutRoleBindingResponse(binding=binding)

    async def ListRoleBindings(
        self, request: access_pb2.ListRoleBindingsRequest, context: Context
    ) -> access_pb2.ListRoleBindingsResponse:
        bindings = self._admin.list_bindings(current_principal(), request.subject)
        return access_pb2.ListRoleBindingsResponse(bindings=bindings)

    async def DeleteRoleBinding(
        self, request: access_pb2.DeleteRoleBindingRequest, context: Context
    ) -> access_pb2.DeleteRoleBindingResponse:
        await self._admin.delete_binding(current_principal(), request.id)
        return access_pb2.DeleteRoleBindingResponse()

    async def CreateTenant(
        self, request: access_pb2.CreateTenantRequest, context: Context
    ) -> access_pb2.CreateTenantResponse:
        return await self._admin.create_tenant(current_principal(), request)

    async def GetTenant(
        self, request: access_pb2.GetTenantRequest, context: Context
    ) -> access_pb2.GetTenantResponse:
        tenant = self._admin.get_tenant(current_principal(), request.name)
        return access_pb2.GetTenantResponse(tenant=tenant)

    async def ListTenants(
        self, request: access_pb2.ListTenantsRequest, context: Context
    ) -> access_pb2.ListTenantsResponse:
        return access_pb2.ListTenantsResponse(tenants=self._admin.list_tenants(current_principal()))

    async def CreateTenantAdminKey(
        self, request: access_pb2.CreateTenantAdminKeyRequest, context: Context
    ) -> access_pb2.CreateTenantAdminKeyResponse:
        return await self._admin.create_tenant_admin_key(current_principal(), request.name)

    async def UpdateTenant(
        self, request: access_pb2.UpdateTenantRequest, context: Context
    ) -> access_pb2.UpdateTenantResponse:
        tenant = await self._admin.update_tenant(current_principal(), request)
        return access_pb2.UpdateTenantResponse(tenant=tenant)
