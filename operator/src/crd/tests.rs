use super::*;

#[test]
fn every_kind_has_a_schema_and_a_status_subresource() {
    for crd in cloud_crds() {
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.schema.as_ref().unwrap().open_api_v3_schema.is_some());
        assert!(version.subresources.as_ref().unwrap().status.is_some());
        assert_eq!(crd.spec.group, GROUP);
    }
}
