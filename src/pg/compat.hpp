/*
 * compat.hpp: the PostgreSQL-version-specific spellings used by the glue, in one place.
 */
#pragma once

#include "postgres_headers.hpp"

#if PG_VERSION_NUM >= 160000
#define HANNOY_RELFILENUMBER(rel) ((rel)->rd_locator.relNumber)
#define HANNOY_TABLESPACE(rel) ((rel)->rd_locator.spcOid)
#define HANNOY_DATABASE(rel) ((rel)->rd_locator.dbOid)
#else
#define HANNOY_RELFILENUMBER(rel) ((rel)->rd_node.relNode)
#define HANNOY_TABLESPACE(rel) ((rel)->rd_node.spcNode)
#define HANNOY_DATABASE(rel) ((rel)->rd_node.dbNode)
#endif
