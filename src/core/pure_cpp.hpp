/*
 * pure_cpp.hpp: included last by every file of the core.
 *
 * The core must stay free of PostgreSQL: its headers redefine printf, Min, Max and
 * friends, and its error handling longjmps over C++ destructors. Including postgres.h
 * anywhere in src/core is therefore a compile error rather than a review finding.
 */
#pragma once

#ifdef POSTGRES_H
#error "src/core must not include postgres.h: the core is PostgreSQL-free by design"
#endif
#ifdef PG_MODULE_MAGIC
#error "src/core must not include fmgr.h"
#endif
