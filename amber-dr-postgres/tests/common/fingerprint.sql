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
-- The position itself: pg_sequences shows NULL for any sequence not yet called (is_called false).
SELECT 'sequence-state ' || n.nspname || '.' || c.relname || ' ' || (xpath('/row/s/text()',
   query_to_xml(format('SELECT last_value || '' '' || is_called AS s FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'
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
-- Every comment on an object of this database (tables, columns, schemas, types, functions,
-- sequences, views, indexes, constraints, ...), but those an extension's script makes.
SELECT 'comment ' || pg_describe_object(d.classoid, d.objoid, d.objsubid) || ' ' || d.description FROM pg_description d
WHERE d.objoid >= 16384 AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = d.classoid AND e.objid = d.objoid AND e.deptype = 'e')
UNION ALL
-- Owners and privileges (ACL items sorted: a restore may grant in another order; a default ACL
-- spelled out, which pg_dump rightly leaves out, as the default).
SELECT 'owner ' || pg_describe_object('pg_class'::regclass, c.oid, 0) || ' ' || pg_get_userbyid(c.relowner)
   || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))) x), '-')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('app', 'Odd Schema') AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT 'column-acl ' || a.attrelid::regclass::text || '.' || a.attname || ' ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(a.attacl) x)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('app', 'Odd Schema') AND a.attacl IS NOT NULL
UNION ALL
SELECT 'owner schema ' || nspname || ' ' || pg_get_userbyid(nspowner)
   || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(nspacl, acldefault('n', nspowner))) x), '-')
FROM pg_namespace WHERE nspname IN ('app', 'Odd Schema', 'public')
UNION ALL
SELECT 'owner ' || pg_describe_object('pg_proc'::regclass, p.oid, 0) || ' ' || pg_get_userbyid(p.proowner)
   || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(p.proacl, acldefault('f', p.proowner))) x), '-')
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname IN ('app', 'Odd Schema')
UNION ALL
SELECT 'owner ' || pg_describe_object('pg_type'::regclass, t.oid, 0) || ' ' || pg_get_userbyid(t.typowner)
   || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(t.typacl, acldefault('T', t.typowner))) x), '-')
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname IN ('app', 'Odd Schema') AND (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
UNION ALL
SELECT 'owner largeobject ' || oid || ' ' || pg_get_userbyid(lomowner)
   || ' acl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(lomacl, acldefault('L', lomowner))) x), '-')
FROM pg_largeobject_metadata
UNION ALL
SELECT 'default-acl ' || pg_get_userbyid(defaclrole) || ' ' || coalesce(defaclnamespace::regnamespace::text, '-') || ' ' || defaclobjtype::text
   || ' ' || (SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(defaclacl) x)
FROM pg_default_acl
UNION ALL
SELECT 'grant ' || grantee || ' ' || table_schema || '.' || table_name || ' ' || privilege_type FROM information_schema.role_table_grants WHERE grantee IN ('amber_app', 'amber_readonly')
UNION ALL
-- The roles (global: a restore creates missing ones as they were), their memberships and settings.
SELECT 'role ' || rolname || ' login=' || rolcanlogin || ' super=' || rolsuper || ' inherit=' || rolinherit
   || ' createrole=' || rolcreaterole || ' createdb=' || rolcreatedb || ' replication=' || rolreplication
   || ' bypassrls=' || rolbypassrls || ' connlimit=' || rolconnlimit || ' until=' || coalesce(rolvaliduntil::text, '-')
   || ' ' || coalesce(shobj_description(oid, 'pg_authid'), '')
FROM pg_roles WHERE rolname LIKE 'amber\_%'
UNION ALL
SELECT 'member ' || pg_get_userbyid(m.member) || ' of ' || pg_get_userbyid(m.roleid) || ' admin=' || m.admin_option
FROM pg_auth_members m WHERE pg_get_userbyid(m.member) LIKE 'amber\_%' OR pg_get_userbyid(m.roleid) LIKE 'amber\_%'
UNION ALL
SELECT 'role-setting ' || pg_get_userbyid(s.setrole) || ' ' || array_to_string(s.setconfig, ',')
FROM pg_db_role_setting s WHERE s.setdatabase = 0 AND pg_get_userbyid(s.setrole) LIKE 'amber\_%'
UNION ALL
-- The database itself: comment, owner, privileges, encoding and locale, settings.
SELECT 'dbcomment ' || coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database()
UNION ALL
SELECT 'database owner=' || pg_get_userbyid(datdba)
   || ' acl=' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(coalesce(datacl, acldefault('d', datdba))) x), '-')
   || ' encoding=' || pg_encoding_to_char(encoding) || ' collate=' || datcollate || ' ctype=' || datctype
   || ' provider=' || datlocprovider::text || ' icu=' || coalesce(daticulocale, '-')
FROM pg_database WHERE datname = current_database()
UNION ALL
SELECT 'database-setting ' || CASE WHEN s.setrole = 0 THEN '-' ELSE pg_get_userbyid(s.setrole)::text END || ' ' || array_to_string(s.setconfig, ',')
FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = current_database()
ORDER BY 1;
