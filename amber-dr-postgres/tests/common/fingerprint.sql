-- A description of a database's content and schema, computed by the server itself.
SELECT 'table ' || n.nspname || '.' || c.relname || ' ' || (xpath('/row/c/text()',
   query_to_xml(format('SELECT count(*) AS c FROM ONLY %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
   || ' md5 ' || coalesce((xpath('/row/h/text()',
   query_to_xml(format('SELECT md5(string_agg(t::text, ''|'' ORDER BY t::text)) AS h FROM ONLY %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text, '-')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'sequence ' || schemaname || '.' || sequencename || ' ' || coalesce(last_value::text, 'null') FROM pg_sequences
UNION ALL
SELECT 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text || ' ' || coalesce((SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname IN ('app', 'Odd Schema') AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
UNION ALL
SELECT 'view ' || schemaname || '.' || viewname || ' ' || md5(definition) FROM pg_views WHERE schemaname = 'app'
UNION ALL
SELECT 'matview ' || schemaname || '.' || matviewname || ' ' || ispopulated FROM pg_matviews
UNION ALL
SELECT 'function ' || p.proname || ' ' || md5(p.prosrc) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'app'
UNION ALL
SELECT 'trigger ' || tgname || ' ' || tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('app', 'Odd Schema'))
UNION ALL
SELECT 'index ' || indexrelid::regclass::text || ' ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app'
UNION ALL
SELECT 'extension ' || extname FROM pg_extension
UNION ALL
SELECT 'largeobject ' || count(*) || ' ' || coalesce(md5(string_agg(md5(lo_get(oid)), ',' ORDER BY md5(lo_get(oid)))), '-') FROM pg_largeobject_metadata
UNION ALL
SELECT 'comment ' || c.relname || ' ' || coalesce(obj_description(c.oid, 'pg_class'), '') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' AND c.relkind = 'r'
UNION ALL
SELECT 'grant ' || grantee || ' ' || table_schema || '.' || table_name || ' ' || privilege_type FROM information_schema.role_table_grants WHERE grantee IN ('amber_app', 'amber_readonly')
UNION ALL
SELECT 'role ' || rolname || ' ' || rolcanlogin || ' ' || coalesce(shobj_description(oid, 'pg_authid'), '') FROM pg_roles WHERE rolname LIKE 'amber\_%'
UNION ALL
SELECT 'dbcomment ' || coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()
ORDER BY 1;
