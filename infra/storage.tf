# Home directories of tess-private on EFS.
#
# Scheme (matches hub/templates/home-storage.yaml): one file system; one access
# point per environment, rooted at /homes/<env> and forcing uid/gid
# home_uid:home_gid, so staging and prod never see each other's files and every
# file is owned by the user pods' uid. The chart makes one static
# PersistentVolume (volumeHandle <fs-id>::<fsap-id>, reclaim policy Retain) and
# a PVC kept on uninstall; z2jh mounts it with subPath "{username}", so each
# user pod mounts only its owner's directory. The file system itself is
# protected from `terraform destroy`, so homes survive uninstalling the chart
# and re-creating the cluster.

resource "aws_efs_file_system" "homes" {
  creation_token   = "${var.cluster_name}-homes"
  encrypted        = true
  kms_key_id       = aws_kms_key.platform.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "elastic"

  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }

  lifecycle {
    prevent_destroy = true
  }

  tags = { Name = "${var.cluster_name}-homes" }
}

resource "aws_efs_backup_policy" "homes" {
  file_system_id = aws_efs_file_system.homes.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_security_group" "efs" {
  name        = "${var.cluster_name}-efs"
  description = "NFS to the home directories, from the cluster's nodes only"
  vpc_id      = aws_vpc.this.id
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_nodes" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from EKS nodes (managed node groups use the cluster security group)"
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
  referenced_security_group_id = aws_eks_cluster.this.vpc_config[0].cluster_security_group_id
}

resource "aws_efs_mount_target" "homes" {
  count           = length(aws_subnet.private)
  file_system_id  = aws_efs_file_system.homes.id
  subnet_id       = aws_subnet.private[count.index].id
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "homes" {
  for_each       = var.environments
  file_system_id = aws_efs_file_system.homes.id

  posix_user {
    uid = var.home_uid
    gid = var.home_gid
  }

  root_directory {
    path = "/homes/${each.key}"
    creation_info {
      owner_uid   = var.home_uid
      owner_gid   = var.home_gid
      permissions = "0750"
    }
  }

  tags = { Name = "${var.cluster_name}-homes-${each.key}" }
}

# Clients mount through a mount target (so only from inside the VPC, past the
# security group) and over TLS (the EFS CSI driver's default), never as root:
# no ClientRootAccess, and the access points force home_uid:home_gid anyway.
# The driver mounts without IAM authorization, so the client is anonymous here.
data "aws_iam_policy_document" "homes" {
  statement {
    sid     = "MountThroughMountTargets"
    actions = ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    resources = [aws_efs_file_system.homes.arn]
    condition {
      test     = "Bool"
      variable = "elasticfilesystem:AccessedViaMountTarget"
      values   = ["true"]
    }
  }
  statement {
    sid     = "TLSOnly"
    effect  = "Deny"
    actions = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    resources = [aws_efs_file_system.homes.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_efs_file_system_policy" "homes" {
  file_system_id = aws_efs_file_system.homes.id
  policy         = data.aws_iam_policy_document.homes.json
}

# Block storage for everything else that claims a volume, above all the hub
# database (z2jh hub.db.type sqlite-pvc, PVC hub-db-dir; hub/values.yaml names
# this class). Encrypted with the platform key, created in the zone of the pod
# that first mounts it (an EBS volume lives in one zone), and growable in place.
#
# Made here with the kubernetes provider rather than by the EBS CSI add-on's
# `defaultStorageClass.enabled`: that class is always named ebs-csi-default-sc
# and sets no `encrypted` or `kmsKeyId`, and the add-on offers no key to change
# either. EKS 1.30+ no longer marks its in-tree gp2 class as the default, so
# this is the only default class.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = "gp3"
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = "true"
    }
  }

  storage_provisioner    = "ebs.csi.aws.com"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true
  reclaim_policy         = "Delete"

  parameters = {
    type      = "gp3"
    encrypted = "true"
    kmsKeyId  = aws_kms_key.platform.arn
  }

  depends_on = [
    aws_eks_addon.ebs_csi,
    aws_eks_access_policy_association.admins,
  ]
}
