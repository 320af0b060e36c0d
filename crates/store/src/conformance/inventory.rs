//! Conformance: the inventory — replaced whole, read back sorted, a site's
//! status changed in place, and a version that every change bumps.

use super::*;
use crate::{InventoryMachine, InventorySite};

fn site(name: &str, status: &str) -> InventorySite {
    InventorySite {
        name: name.into(),
        kind: "satellite".into(),
        status: status.into(),
    }
}

fn machine(site: &str, name: &str) -> InventoryMachine {
    InventoryMachine {
        site: site.into(),
        name: name.into(),
    }
}

pub async fn the_inventory_is_replaced_whole_and_versioned(h: &dyn Harness) {
    let s = h.store().await;
    assert_eq!(s.inventory().await.unwrap(), None);
    assert_eq!(s.inventory_version().await.unwrap(), None);
    assert_eq!(
        s.set_site_status("b", "decom", "token:a", 5).await.unwrap(),
        None
    );
    let v1 = s
        .replace_inventory(
            vec![site("b", "inService"), site("a", "decom")],
            vec![
                machine("b", "b01"),
                machine("a", "a00"),
                machine("b", "b00"),
            ],
            "token:a",
            10,
        )
        .await
        .unwrap();
    let inv = s.inventory().await.unwrap().unwrap();
    assert_eq!(inv.version, v1);
    assert_eq!(inv.sites, [site("a", "decom"), site("b", "inService")]);
    assert_eq!(
        inv.machines,
        [
            machine("a", "a00"),
            machine("b", "b00"),
            machine("b", "b01")
        ]
    );
    assert_eq!((inv.updated_by.as_str(), inv.updated_at), ("token:a", 10));

    let v2 = s
        .set_site_status("b", "decom", "token:sre", 20)
        .await
        .unwrap()
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(s.inventory_version().await.unwrap(), Some(v2));
    let inv = s.inventory().await.unwrap().unwrap();
    assert_eq!(inv.sites[1], site("b", "decom"));
    assert_eq!(inv.updated_by, "token:sre");
    assert_eq!(
        s.set_site_status("zz", "decom", "token:sre", 20)
            .await
            .unwrap(),
        None
    );

    // Replacing drops what the new inventory does not list.
    let v3 = s
        .replace_inventory(
            vec![site("c", "removed")],
            vec![machine("c", "c00")],
            "token:a",
            30,
        )
        .await
        .unwrap();
    assert!(v3 > v2);
    let inv = s.inventory().await.unwrap().unwrap();
    assert_eq!(inv.sites, [site("c", "removed")]);
    assert_eq!(inv.machines, [machine("c", "c00")]);
}
