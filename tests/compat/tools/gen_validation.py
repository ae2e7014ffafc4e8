# Generates tests/compat/validation-cases.yaml from transcribed vault-k8s test tables.
import os, yaml, collections
P='vault.hashicorp.com/'
AT='agent-inject/agent/annotations_test.go (index id 38069930624, newest stored)'
ST='agent-inject/agent/container_sidecar_test.go (index id 38428780804, newest stored)'
GT='agent-inject/agent/agent_test.go @6e1aef8ba263dff22d6dfed15e44e3c3989952a4'
cases=[]
def add(fn, name, ann, outcome, src=AT, expect=None, pod=None, injector=None, note=None, stage=None):
    c=collections.OrderedDict()
    c['id']=f"{len(cases)+1:03d}"
    c['source']=src; c['test']=fn; c['name']=name
    c['annotations']=ann
    if pod: c['pod']=pod
    if injector: c['injector_config']=injector
    c['outcome']=outcome
    if stage: c['vault_k8s_stage']=stage
    if expect is not None: c['expect']=expect
    if note: c['note']=note
    cases.append(c)

# --- TestCouldErrorAnnotations: Init()+New() on a pod with just this annotation
bools=[('true',True),('false',True),('TRUE',True),('FALSE',True),('0',True),('1',True),('t',True),('f',True),('tRuE',False),('fAlSe',False),('',True)]
parsed={'true':True,'TRUE':True,'1':True,'t':True,'false':False,'FALSE':False,'0':False,'f':False,'':False}
for key in ['agent-inject','agent-pre-populate','agent-pre-populate-only','tls-skip-verify','agent-revoke-on-shutdown','agent-cache-enable']:
    for v,ok in bools:
        exp={'parsed_bool':parsed[v]} if ok else None
        add('TestCouldErrorAnnotations', f'{key}={v!r}', {P+key:v}, 'accepted' if ok else 'error', expect=exp,
            note=('empty string parses to false via parseutil.ParseBool' if v=='' else None))
for v,ok in [('5',True),('0',True),('01',True),('-1',False),('foobar',False)]:
    add('TestCouldErrorAnnotations', f'agent-revoke-grace={v!r}', {P+'agent-revoke-grace':v}, 'accepted' if ok else 'error',
        expect=({'revoke_grace_seconds':int(v)} if ok else None))
for key in ['agent-run-as-user','agent-run-as-group']:
    for v,ok in [('0',True),('100',True),('root',False)]:
        add('TestCouldErrorAnnotations', f'{key}={v!r}', {P+key:v}, 'accepted' if ok else 'error',
            expect=({'int':int(v)} if ok else None))
for v,ok in [('true',True),('false',True),('TRUE',True),('FALSE',True),('tRuE',False),('fAlSe',False),('',True)]:
    add('TestCouldErrorAnnotations', f'agent-share-process-namespace={v!r}', {P+'agent-share-process-namespace':v}, 'accepted' if ok else 'error',
        expect=({'shareProcessNamespace':parsed[v]} if ok else None))
for v,ok in [('true',True),('false',True),('secure',False),('',True)]:
    add('TestCouldErrorAnnotations', f'agent-set-security-context={v!r}', {P+'agent-set-security-context':v}, 'accepted' if ok else 'error',
        expect=({'set_security_context':parsed[v]} if ok else None))
for key in ['auth-min-backoff','auth-max-backoff']:
    for v,ok in [('',True),('1s',True),('1m',True),('x',False)]:
        add('TestCouldErrorAnnotations', f'{key}={v!r}', {P+key:v}, 'accepted' if ok else 'error', stage='Init (time.ParseDuration)' if not ok else None)

# --- Secret name parsing (preserve case off)
rows=[('agent-inject-secret-foobar','test1','foobar','test1'),('agent-inject-secret-FOOBAR','test2','foobar','test2'),
      ('agent-inject-secret-foobar-2_3','test3','foobar-2_3','test3'),('agent-inject-secret-server.crt','creds/tls/somecert','server.crt','creds/tls/somecert'),
      ('agent-inject-secret','test4',None,None),('agent-inject-secret-','test5',None,None),
      ('agent-inject-secret-FOOBAR_EXPLICIT','test2','FOOBAR_EXPLICIT','test2')]
for k,v,name,path in rows:
    add('TestSecretAnnotationsWithPreserveCaseSensitivityFlagOff', k, {P+k:v, P+'preserve-secret-case-FOOBAR_EXPLICIT':'true'}, 'accepted',
        expect=({'secrets':[{'name':name,'path':path,'file':'/vault/secrets/'+name}]} if name else {'secrets':[]}))
for k,v,name,path in [('agent-inject-secret-foobar','test1','foobar','test1'),('agent-inject-secret-FOOBAR','test2','FOOBAR','test2')]:
    add('TestSecretAnnotationsWithPreserveCaseSensitivityFlagOn', k, {P+k:v, P+'preserve-secret-case':'true'}, 'accepted',
        expect={'secrets':[{'name':name,'path':path}]})

# --- file location
for name,ann,fname,loc in [
 ('simple name',{P+'agent-inject-secret-foobar':'vault/test1',P+'agent-inject-file-foobar':'foobar_simple_name'},'foobar_simple_name','vault/test1'),
 ('absolute file path',{P+'agent-inject-secret-foobar':'vault/test1',P+'agent-inject-file-foobar':'/some/path/foobar_simple_name'},'/some/path/foobar_simple_name','vault/test1'),
 ('long file name',{P+'agent-inject-secret-foobar':'vault/test2',P+'agent-inject-file-foobar':'this_is_very_long_and/would_fail_in_kubernetes/if_in_annotation'},'this_is_very_long_and/would_fail_in_kubernetes/if_in_annotation','vault/test2'),
 ("file doesn't match secret annotation",{P+'agent-inject-secret-foobar':'vault/test2',P+'agent-inject-file-notcorresponding':'this_is_very_long_and/would_fail_in_kubernetes/if_in_annotation'},'','vault/test2')]:
    dest='/vault/secrets/'+(fname.lstrip('/') if fname else 'foobar')
    add('TestSecretLocationFileAnnotations', name, ann, 'accepted', expect={'secrets':[{'name':'foobar','path':loc,'file_path_and_name':fname,'destination':dest}]},
        note='destination = filepath.Join(mount path, file) (config.go newTemplateConfigs)')

# --- templates
T=[({P+'agent-inject-secret-foobar':'test1',P+'agent-inject-template-foobar':'foobarTemplate'},{'foobar':'foobarTemplate'}),
   ({P+'agent-inject-secret-foobar2':'test2',P+'agent-inject-template-foobar':''},{'foobar2':''}),
   ({P+'agent-inject-secret-foobar':'test1',P+'agent-inject-templat-foobar':'foobarTemplate'},{'foobar':''}),
   ({P+'agent-inject-secret-foobar':'test1',P+'agent-inject-template-foobar2':'foobarTemplate'},{'foobar':'','foobar2':'foobarTemplate'}),
   ({P+'agent-inject-secret-foobar2':'test1',P+'agent-inject-template-foobar':'foobarTemplate'},{'foobar2':'','foobar':'foobarTemplate'}),
   ({P+'agent-inject-secret-foobar2':'test1',P+'agent-inject-TEMPLATE-foobar':'foobarTemplate'},{'foobar2':''})]
for i,(ann,exp) in enumerate(T):
    add('TestSecretTemplateAnnotations', f'#{i}', ann, 'accepted',
        expect={'secret_templates':exp, 'note':'"" = default template; a template-only NAME (no agent-inject-secret-NAME) is its own secret with empty path'})

mixed={P+'agent-inject-secret-foobar':'test1',P+'agent-inject-template-foobar':'',P+'agent-inject-template-file-foobar':'/etc/config.tmpl',
 P+'agent-inject-secret-test2':'test2',P+'agent-inject-template-test2':'foobarTemplate',P+'agent-inject-template-file-test2':'',
 P+'agent-inject-template-only-template':'onlyTemplate',P+'agent-inject-template-file-only-template-file':'onlyTemplateFile',
 P+'agent-inject-secret-barfoo':'test1',P+'agent-inject-template-barfoo':'',P+'agent-template-left-delim-barfoo':'${',P+'agent-template-right-delim-barfoo':'}',P+'agent-inject-template-file-barfoo':'/etc/config.tmpl',
 P+'agent-inject-secret-test3':'test3',P+'agent-inject-template-test3':'foobarTemplate3',P+'agent-inject-template-file-test3':'',P+'agent-template-left-delim-test3':'',P+'agent-template-right-delim-test3':'',
 P+'agent-inject-template-only-template-2':'onlyTemplate2',P+'agent-template-left-delim-only-template-2':'${',P+'agent-template-right-delim-only-template-2':'}',
 P+'agent-inject-template-file-only-template-file-2':'onlyTemplateFile2',P+'agent-template-left-delim-only-template-file-2':'${',P+'agent-template-right-delim-only-template-file-2':'}'}
S=lambda n,p,t,l,r,tf: {'name':n,'path':p,'template':t,'left_delim':l,'right_delim':r,'template_file':tf,'mount_path':'/vault/secrets'}
add('TestSecretMixedTemplatesAnnotations','mixed templates, template files, delimiters, template-only secrets',mixed,'accepted',expect={'secrets':[
 S('foobar','test1','','','','/etc/config.tmpl'),S('test2','test2','foobarTemplate','','',''),S('only-template','','onlyTemplate','','',''),
 S('only-template-file','','','','','onlyTemplateFile'),S('barfoo','test1','','${','}','/etc/config.tmpl'),S('test3','test3','foobarTemplate3','','',''),
 S('only-template-2','','onlyTemplate2','${','}',''),S('only-template-file-2','','','${','}','onlyTemplateFile2')],
 'note':'"" delimiters become {{ and }} in the agent config (config.go DefaultLeftDelim/DefaultRightDelim)'})
add('TestSecretTemplateFileAnnotations','template wins over template-file',{P+'agent-inject-secret-foobar':'test1',P+'agent-inject-template-foobar':'foobarTemplate',P+'agent-inject-template-file-foobar':'/etc/config.tmpl'},'accepted',expect={'secrets':[{'name':'foobar','template':'foobarTemplate','template_file':''}]})
add('TestSecretTemplateFileAnnotations','empty template uses template-file',{P+'agent-inject-secret-foobar':'test1',P+'agent-inject-template-foobar':'',P+'agent-inject-template-file-foobar':'/etc/config.tmpl'},'accepted',expect={'secrets':[{'name':'foobar','template':'','template_file':'/etc/config.tmpl'}]})
add('TestSecretPermissionAnnotations','perms matched',{P+'agent-inject-secret-foobar':'test1',P+'agent-inject-perms-foobar':'0600'},'accepted',expect={'secrets':[{'name':'foobar','perms':'0600'}]})
add('TestSecretPermissionAnnotations','perms other name ignored',{P+'agent-inject-secret-foobar':'test2',P+'agent-inject-perms-foobar2':'0600'},'accepted',expect={'secrets':[{'name':'foobar','perms':''}]})
add('TestSecretCommandAnnotations','command matched',{P+'agent-inject-secret-foobar':'test1',P+'agent-inject-command-foobar':'pkill -HUP nginx'},'accepted',expect={'secrets':[{'name':'foobar','command':'pkill -HUP nginx'}]})
add('TestSecretCommandAnnotations','command other name ignored',{P+'agent-inject-secret-foobar':'test2',P+'agent-inject-command-foobar2':'pkill -HUP nginx'},'accepted',expect={'secrets':[{'name':'foobar','command':''}]})
for name,v,ok,exp in [('force error','True',True,True),('ignore error','false',True,False),('default value',None,True,False),('bad annotation','unknown',False,None)]:
    ann={P+'agent-inject-secret-foobar':'test'}
    if v is not None: ann[P+'error-on-missing-key-foobar']=v
    add('TestSecretErrorOnMissingKeyAnnotations',name,ann,'accepted' if ok else 'error',expect=({'secrets':[{'name':'foobar','error_on_missing_key':exp}]} if ok else None))

# --- namespace
for key,val,cfg,exp in [('','','',''),('','','test-namespace','test-namespace'),('namespace','','',''),('namespace','foobar','','foobar'),('namespace','foobar','test-namespace','foobar'),('namespace','fooBar','','fooBar')]:
    ann={P+key:val} if key else {}
    add('TestVaultNamespaceAnnotation',f'annotation={val!r} injector_default={cfg!r}',ann,'accepted',injector={'vault_namespace':cfg},expect={'vault_namespace':exp},
        note=('test passes the map {"": ""}; transcribed as no annotation' if not key else None))

# --- run as same user
for name,v,scc,res,err,uid in [('false with no app SCC','false',None,False,False,100),('true with app SCC','true',123456,True,False,123456),
  ('false with app SCC','false',123456,False,False,100),('true with no app SCC','true',None,False,True,100),('annotation not set',None,None,False,False,100),
  ('invalid annotation set','rooooooot',None,False,True,100),('true with app SCC as root user','true',0,False,True,100)]:
    ann={} if v is None else {P+'agent-run-as-same-user':v}
    pod={'containers[0].securityContext':(None if scc is None else {'runAsUser':scc})}
    add('Test_runAsSameID',name,ann,'error' if err else 'accepted',pod=pod,expect=(None if err else {'run_as_same_user':res,'agent_run_as_user':uid}),
        note=('error text: "container not allowed to run as root"' if scc==0 else ('error: no SecurityContext found for Container 0' if (v=='true' and scc is None) else None)))

# --- auth config
SA='serviceaccount/somewhere/token'
for ann,exp in [({P+'role':'backwardscompat'},{'role':'backwardscompat','token_path':SA}),
  ({P+'role':'backwardscompat',P+'auth-config-role':'lowerprio'},{'role':'backwardscompat','token_path':SA}),
  ({P+'auth-config-token-path':'serviceaccount/somewhere-else/token'},{'token_path':'serviceaccount/somewhere-else/token'}),
  ({P+'auth-config-name':'foo',P+'auth-config-ca-cert':'bar',P+'auth-config-client_cert':'baz',P+'auth-config-credential_poll_interval':'1',P+'auth-config-remove_secret_id_file_after_reading':'false'},
   {'name':'foo','ca_cert':'bar','client_cert':'baz','credential_poll_interval':'1','remove_secret_id_file_after_reading':'false','token_path':SA})]:
    add('TestAuthConfigAnnotations',', '.join(k[len(P):] for k in ann),ann,'accepted',expect={'auto_auth_method_config':exp},
        pod={'containers[0].volumeMounts':[{'name':'foobar','mountPath':'serviceaccount/somewhere'}]})

# --- inject containers (pod has containers foobar, foo1, foo2)
for name,ann,val,mounts in [('No InjectionContainers annotations',{},'foobar,foo1,foo2',[0,1,2]),('with container name',{P+'agent-inject-containers':'foo1'},'foo1',[1]),
  ('multiple container names',{P+'agent-inject-containers':'foo1,foo2'},'foo1,foo2',[1,2])]:
    add('TestInjectContainers',name,ann,'accepted',pod={'containers':['foobar','foo1','foo2']},
        expect={'agent-inject-containers':val,'secret_mount_in_container_indexes':mounts,'patch_ops':['add /spec/volumes (token)','add /spec/volumes/- (secrets)','add /spec/volumes','volumeMounts per target','add /spec/initContainers','add /spec/containers/- (sidecar)','add status annotation']})

# --- default template
for v,exp,err in [('json','json',False),('JSON','json',False),('map','map',False),('MAP','map',False),('foobar','',True),('jsn','',True),('','',True)]:
    add('TestDefaultTemplateOverride',f'agent-inject-default-template={v!r}',{P+'agent-inject-default-template':v},'error' if err else 'accepted',expect=(None if err else {'default_template':exp}),
        note=('empty string is an ERROR here (unlike booleans)' if v=='' else None))
add('TestAuthMinMaxBackoff','5s/10s',{P+'auth-min-backoff':'5s',P+'auth-max-backoff':'10s'},'accepted',expect={'min_backoff':'5s','max_backoff':'10s'})
add('TestAutoAuthExitOnError','true',{P+'agent-auto-auth-exit-on-err':'true'},'accepted',expect={'auto_auth_exit_on_err':True})
for key in ['agent-disable-idle-connections','agent-disable-keep-alives']:
    fn='TestDisableIdleConnections' if 'idle' in key else 'TestDisableKeepAlives'
    add(fn,'full list',{P+key:'auto-auth,caching,templating'},'accepted',expect={'list':['auto-auth','caching','templating']})
    add(fn,'one',{P+key:'auto-auth'},'accepted',expect={'list':['auto-auth']})
    add(fn,'none',{},'accepted',expect={'list':None})
add('TestParseTelemetryAnnotations','prometheus',{P+'agent-telemetry-prometheus_retention_time':'5s',P+'agent-telemetry-disable_hostname':'true'},'accepted',expect={'telemetry':{'prometheus_retention_time':'5s','disable_hostname':True}})
add('TestParseTelemetryAnnotations','common with some list annotations',{P+'agent-telemetry-prefix_filter':'["+vault.token", "-vault.expire", "+vault.expire.num_leases"]',P+'agent-telemetry-maximum_gauge_cardinality':'3',P+'agent-telemetry-lease_metrics_epsilon':'foo',P+'agent-telemetry-enable_hostname_label':'true'},'accepted',
    expect={'telemetry':{'prefix_filter':['+vault.token','-vault.expire','+vault.expire.num_leases'],'maximum_gauge_cardinality':3.0,'lease_metrics_epsilon':'foo','enable_hostname_label':True}})
add('TestParseTemplateConfigAnnotations','lease renewal threshold set',{P+'template-lease-renewal-threshold':'0.75'},'accepted',expect={'lease_renewal_threshold':0.75})
add('TestParseTemplateConfigAnnotations','lease renewal threshold unset',{},'accepted',expect={'lease_renewal_threshold':0})
add('TestParseTemplateConfigAnnotations','invalid lease renewal threshold',{P+'template-lease-renewal-threshold':'one-third'},'error')

# --- agent_test.go ShouldInject
for inj,st,exp in [('true','',True),('false','',False),('true','injected',False),('false','injected',False),('true','update',True)]:
    add('TestShouldInject',f'inject={inj} status={st!r}',{P+'agent-inject':inj,P+'agent-inject-status':st},'accepted',src=GT,expect={'should_inject':exp})
# --- agent_test.go Validate (agent fields -> annotations equivalent)
VAL=[('configmap, no role',{P+'agent-configmap':'test'},True,None),('role+address+auth-path',{P+'role':'test',P+'service':'https://foobar.com:8200',P+'auth-path':'test'},True,None),
     ('empty namespace',{P+'agent-configmap':'test',P+'agent-request-namespace':''},False,'namespace missing from request'),
     ('empty image',{P+'agent-configmap':'test',P+'agent-image':''},False,'no Vault image found'),
     ('no role (kubernetes auth)',{P+'role':'',P+'service':'https://foobar.com:8200'},False,'no Vault role found'),
     ('no address',{P+'role':'test',P+'service':''},False,'no Vault address found'),
     ('no auth path',{P+'role':'test',P+'service':'https://foobar.com:8200',P+'auth-path':''},False,'no Vault Auth Path found')]
for name,ann,ok,msg in VAL:
    add('TestValidate',name,ann,'accepted' if ok else 'error',src=GT,stage='Validate',expect=(None if ok else {'error':msg}),
        note='test builds Agent structs directly; annotations shown are the equivalent pod annotations')

# --- container_sidecar_test.go: revoke hook
for flag,ann,pres in [(True,None,True),(False,None,False),(True,'true',True),(True,'false',False),(False,'true',True),(False,'false',False)]:
    a={P+'role':'foobar'}
    if ann is not None: a[P+'agent-revoke-on-shutdown']=ann
    add('TestContainerSidecarRevokeHook',f'flag={flag} annotation={ann}',a,'accepted',src=ST,injector={'revoke_on_shutdown':flag},
        expect={'sidecar_prestop':('/bin/sh -c "/bin/sleep 5 && /bin/vault token revoke -address=<vault addr> -self"' if pres else None)})
# resources (parseResources on Agent fields == annotations agent-limits-*/agent-requests-*)
R=[('valid M',['500M','128M','128M','250M','64M','64M'],False),('valid G',['500G','128G','128G','250G','64G','64G'],False),('valid Mi',['500Mi','128Mi','128Mi','250Mi','64Mi','64Mi'],False),
   ('valid Gi',['500Gi','128Gi','128Gi','250Gi','64Gi','64Gi'],False),('valid none',['']*6,False),('valid 0',['0']*6,False),('valid no requests',['500Mi','128m','128m','','',''],False),
   ('valid no limits',['','','','250Mi','64m','64m'],False),('valid just cpu limit',['500Mi','','','','',''],False),('valid just mem limit',['','128m','','','',''],False),
   ('valid just eph storage limit',['','','128m','','',''],False),('valid just cpu request',['','','','500Mi','',''],False),('valid just mem request',['','','','','128m',''],False),
   ('valid just eph storage request',['','','','','','128m'],False),('invalid cpu Mi notation',['500mi','128m',None,'250mi','64m',None],True),
   ('invalid cpu Gi notation',['500gi','128m',None,'250gi','64m',None],True),('invalid mem m notation',['500Mi','128mb',None,'250Mi','64mb',None],True),
   ('invalid mem g notation',['500Mi','128g',None,'250Mi','64g',None],True),('invalid mem gi notation',['500Mi','128gi',None,'250Mi','64gi',None],True)]
keys=['agent-limits-cpu','agent-limits-mem','agent-limits-ephemeral','agent-requests-cpu','agent-requests-mem','agent-requests-ephemeral']
rk=['limits.cpu','limits.memory','limits.ephemeral-storage','requests.cpu','requests.memory','requests.ephemeral-storage']
for name,vals,err in R:
    ann={P+k:v for k,v in zip(keys,vals) if v is not None}
    exp=None if err else {r:(v if v!='' else 'absent') for r,v in zip(rk,vals)}
    add('TestContainerSidecarCustomResources',name,ann,'error' if err else 'accepted',src=ST,expect=exp,
        note='quantities are resource.ParseQuantity; "" means the limit/request is omitted; test drives Agent fields, annotations are the equivalent')
# security context
def sc(u,g,nonroot): return {'runAsUser':u,'runAsGroup':g,'runAsNonRoot':nonroot,'readOnlyRootFilesystem':True,'capabilities':{'drop':['ALL']},'allowPrivilegeEscalation':False}
SC=[('Runtime defaults, no annotations',{},{},None,sc(100,1000,True)),
    ('Runtime defaults, non-root user and group annotations',{},{'agent-run-as-user':'1001','agent-run-as-group':'1001'},None,sc(1001,1001,True)),
    ('Runtime defaults, root user and group annotations',{},{'agent-run-as-user':'0','agent-run-as-group':'0'},None,sc(0,0,False)),
    ('Runtime defaults, root user and non-root group annotations',{},{'agent-run-as-user':'0','agent-run-as-group':'100'},None,sc(0,100,False)),
    ('Runtime defaults, non-root user and root group annotations',{},{'agent-run-as-user':'100','agent-run-as-group':'0'},None,sc(100,0,False)),
    ('Runtime no security context, no annotations',{'set_security_context':False},{},None,None),
    ('Runtime no security context, but user annotation',{'set_security_context':False},{'agent-run-as-user':'100'},None,sc(100,1000,True)),
    ('Runtime defaults, but user annotation with no security context',{},{'agent-run-as-user':'100','agent-set-security-context':'false'},None,None),
    ('Runtime sameAsUser, no annotations',{'run_as_same_user':True},{},123456,sc(123456,1000,True)),
    ('Runtime defaults, sameAsUser annotation',{},{'agent-run-as-same-user':'true'},123456,sc(123456,1000,True))]
for name,inj,a,scc,exp in SC:
    ann={P+'role':'foobar'}; ann.update({P+k:v for k,v in a.items()})
    cfg={'run_as_user':100,'run_as_group':1000,'set_security_context':True,'run_as_same_user':False}; cfg.update(inj)
    add('TestContainerSidecarSecurityContext',name,ann,'accepted',src=ST,injector=cfg,
        pod={'containers[0].securityContext':(None if scc is None else {'runAsUser':scc})},
        expect={'agent_container_securityContext':exp},
        note='runAsNonRoot is true only when both uid and gid are non-zero')
# cache
for name,a,exp in [('cache enabled',{'agent-cache-enable':'true'},True),('cache disabled',{'agent-cache-enable':'false'},False),
                   ('only init container',{'agent-cache-enable':'true','agent-pre-populate-only':'true'},False),
                   ('only sidecar container',{'agent-cache-enable':'true','agent-pre-populate':'false'},False)]:
    ann={P+'role':'role'}; ann.update({P+k:v for k,v in a.items()})
    add('TestContainerCache',name,ann,'accepted',src=ST,expect={'persistent_cache_volume_vault-agent-cache':exp})
# json patch
for name,jp,ijp,init,err,res in [('null patch','null','null',False,False,'unchanged sidecar'),('null patch (init)','null','null',True,False,'unchanged init'),
   ('empty patch','','',False,False,'unchanged sidecar (empty string deleted)'),('empty list','[]','[]',False,False,'unchanged'),
   ('invalid JSON','abc','abc',False,True,None),('invalid operation','[{"op": "invalid"}]','[{"op": "invalid"}]',False,True,None),
   ('set different name','[{"op": "replace", "path": "/name", "value": "different-name"}]','',False,False,'sidecar name different-name'),
   ('set different name (init)','','[{"op": "replace", "path": "/name", "value": "different-name-init"}]',True,False,'init name different-name-init')]:
    add('TestAgentJsonPatch',name,{P+'role':'role',P+'agent-json-patch':jp,P+'agent-init-json-patch':ijp},'error' if err else 'accepted',src=ST,expect=(None if err else {'result':res}),
        note=('security: a pod-author JSON patch can rewrite the agent container; vault-injector may deny it as a documented security denial' ))
# secret-volume-path
add('TestContainerSidecarVolume','per-secret and default secret-volume-path, extra secret, copy mounts',
   {P+'role':'foobar',P+'agent-inject-secret-secret1':'secrets/secret1',P+'secret-volume-path-secret1':'/etc/container_environment',
    P+'agent-inject-secret-secret2':'secret/secret2',P+'secret-volume-path-secret2':'/etc/default_path',P+'secret-volume-path':'/etc/default_path',
    P+'agent-inject-secret-secret3':'secret/secret3',P+'agent-extra-secret':'extrasecret',P+'agent-copy-volume-mounts':'foobar'},'accepted',src=ST,
   pod={'containers[0]':{'name':'foobar','volumeMounts':[{'name':'foobar','mountPath':'serviceaccount/somewhere'},{'name':'tobecopied','mountPath':'/etc/somewhereelse'}]}},
   expect={'sidecar_volume_mounts':[['<sa token volume>','serviceaccount/somewhere',True],['home-sidecar','/home/vault',False],['vault-secrets','/etc/default_path',False],
     ['vault-secrets-custom-0','/etc/container_environment',False],['<extraSecretVolumeName>','/vault/custom',True],['tobecopied','/etc/somewhereelse',False]],
     'note':'a per-secret path equal to the default is not mounted twice; secrets: secret1 -> /etc/container_environment/secret1, secret2,secret3 -> /etc/default_path/'})
add('TestContainerSidecar','defaults',{P+'role':'foobar'},'accepted',src=ST,injector={'proxy_address':'https://proxy:3128'},
   expect={'env_count':7,'env_order_tail':['VAULT_LOG_LEVEL','VAULT_LOG_FORMAT','HTTPS_PROXY','VAULT_CONFIG'],'resources':{'limits.cpu':'500m','limits.memory':'128Mi','requests.cpu':'250m','requests.memory':'64Mi','ephemeral':'unset'}})
add('TestContainerSidecarConfigMap','agent-configmap overrides generated config',{P+'agent-configmap':'foobarConfigMap',P+'role':'foobar',P+'agent-pre-populate':'true',P+'agent-pre-populate-only':'true',P+'tls-skip-verify':'true',P+'tls-server-name':'foobar.server',P+'ca-cert':'ca-cert',P+'ca-key':'ca-key',P+'client-cert':'client-cert',P+'client-key':'client-key',P+'secret-volume-path':'/foo/bar',P+'agent-inject-secret-foo':'db/creds/foo',P+'agent-inject-template-foo':'template foo',P+'agent-inject-secret-bar':'db/creds/bar'},'accepted',src=ST,
   expect={'env_count':12,'sidecar_args0':'touch /home/vault/.vault-token && vault agent -config=/vault/configs/config.hcl'})


HT='agent-inject/handler_test.go @6e1aef8ba263dff22d6dfed15e44e3c3989952a4 (older handler; patch paths from that era)'
HPOD={'namespace':'test','initContainers':[{'name':'web-init','volumeMounts':[{'name':'foobar','mountPath':'serviceaccount/somewhere'}]}],
      'containers':[{'name':'web','volumeMounts':[{'name':'foobar','mountPath':'serviceaccount/somewhere'}],'securityContext':{'runAsUser':1000720000}}]}
HCFG={'vault_address':'https://vault:8200','auth_path':'kubernetes','image':'vault'}
def hp(ns=None): d=dict(HPOD); 
for name,ann,ns,allowed,err,ops in [
 ('kube-system namespace',{P+'agent-inject':'true',P+'role':'demo'},'kube-system',False,'error with request namespace',None),
 ('already injected',{P+'agent-inject-status':'injected'},'',True,None,[]),
 ('no injection by default',{},'',True,None,[]),
 ('injection disabled',{P+'agent-inject':'false',P+'role':'demo'},'test',True,None,[]),
 ('basic pod injection',{P+'agent-inject':'true',P+'role':'demo'},'test',True,None,['add /spec/volumes','add /spec/volumes','add /spec/containers/0/volumeMounts/-','add /spec/initContainers/-','add /spec/initContainers/0/volumeMounts/-','add /spec/containers/-','add /metadata/annotations/vault.hashicorp.com~1agent-inject-status']),
 ('init first',{P+'agent-inject':'true',P+'role':'demo',P+'agent-init-first':'true'},'test',True,None,['add /spec/volumes','add /spec/volumes','add /spec/containers/0/volumeMounts/-','remove /spec/initContainers','add /spec/initContainers','add /spec/initContainers/-','add /spec/initContainers/1/volumeMounts/-','add /spec/containers/-','add status annotation']),
 ('configmap pod injection',{P+'agent-inject':'true',P+'agent-configmap':'demo'},'test',True,None,['add /spec/volumes x3 (token, secrets, configmap)','add /spec/containers/0/volumeMounts/-','add /spec/initContainers/-','add /spec/initContainers/0/volumeMounts/-','add /spec/containers/-','add status annotation']),
 ('tls pod injection',{P+'agent-inject':'true',P+'agent-configmap':'demo',P+'tls-secret':'demo'},'test',True,None,['add /spec/volumes x4','add /spec/containers/0/volumeMounts/-','add /spec/initContainers/-','add /spec/initContainers/0/volumeMounts/-','add /spec/containers/-','add status annotation']),
 ('tls no configmap pod injection',{P+'agent-inject':'true',P+'role':'demo',P+'tls-secret':'demo'},'test',True,None,['add /spec/volumes x3','add /spec/containers/0/volumeMounts/-','add /spec/initContainers/-','add /spec/initContainers/0/volumeMounts/-','add /spec/containers/-','add status annotation']),
 ('tls no configmap no init pod injection',{P+'agent-inject':'true',P+'role':'demo',P+'tls-secret':'demo',P+'agent-pre-populate':'false'},'test',True,None,['add /spec/volumes x3','add /spec/containers/0/volumeMounts/-','add /spec/containers/- (sidecar only, no init container)','add status annotation']),
 ('tls no configmap init only pod injection',{P+'agent-inject':'true',P+'role':'demo',P+'tls-secret':'demo',P+'agent-pre-populate-only':'true'},'test',True,None,['add /spec/volumes x3','add /spec/containers/0/volumeMounts/-','add /spec/initContainers/-','add /spec/initContainers/0/volumeMounts/- (app init containers get the secrets mount too)','add status annotation (no sidecar)'])]:
    pod=dict(HPOD); pod['namespace']=ns
    add('TestHandlerHandle',name,ann,'accepted' if allowed else 'error',src=HT,injector=HCFG,pod=pod,
        expect=({'allowed':False,'message_contains':err} if not allowed else {'allowed':True,'patch':(ops or 'none (pod untouched)')}))
out={'about':{'what':'vault-k8s own annotation validation test cases, transcribed as data (facts, not code)',
  'repo':'hashicorp/vault-k8s','files':[AT,ST,GT],
  'harness':'vault-k8s runs agent.Init(pod, cfg) then agent.New(pod) (then Validate / ContainerSidecar / Patch). "error" = any of these returned an error, which the webhook turns into a denied admission.',
  'default_injector_config':{'image':'foobar-image','address':'http://foobar:8200','auth_type':'kubernetes','auth_path':'test','namespace':'test','revoke_on_shutdown':True,'run_as_user':'100','run_as_group':'1000','set_security_context':True,'proxy_address':'http://proxy:3128','default_template':'map','limits':'500m/128Mi','requests':'250m/64Mi','exit_on_retry_failure':True},
  'default_test_pod':{'name':'foo','containers':[{'name':'foobar','volumeMounts':[{'name':'foobar','mountPath':'serviceaccount/somewhere'}],'securityContext':{'runAsUser':1000720000}}]},
  'count':len(cases)},
 'cases':cases}
class D(yaml.SafeDumper): pass
D.add_representer(collections.OrderedDict, lambda d,o: d.represent_mapping('tag:yaml.org,2002:map', o.items()))
open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'validation-cases.yaml'),'w').write(yaml.dump(out,Dumper=D,sort_keys=False,allow_unicode=True,width=200))
print(len(cases), collections.Counter(c['outcome'] for c in cases))
